//! [`EnvRepository`] for [`PostgresStore`] (migration `0011_kv_env.sql`):
//! `env_vars` (a plain value or a sealed secret per row, never both) and
//! `app_data_keys`.
//!
//! - **`env_put`** is one transaction: it locks the app's row
//!   (`FOR NO KEY UPDATE`, which neither blocks nor waits for foreign-key
//!   checks of other tables), counts the app's variables, then upserts. The
//!   lock serialises one app's puts, so racing new names cannot pass the
//!   cap together.
//! - **`data_key_insert`** is `INSERT … ON CONFLICT DO NOTHING`, then a read
//!   of the winner's key in a second statement (whose snapshot sees the row
//!   the insert waited for): racing first writers agree on one key.
//! - **`data_key_replace`** is one `UPDATE … WHERE` the stored key is `old`:
//!   a compare-and-set.

use async_trait::async_trait;
use picloud_core::domain::{EnvName, EnvValue, EnvVar, Sealed, WrappedKey};
use picloud_core::ids::AppId;
use picloud_core::ports::{EnvRepoError, EnvRepository};
use sqlx::Row;
use sqlx::postgres::PgRow;
use uuid::Uuid;

use crate::PostgresStore;
use crate::error::{Failure, env_error};
use crate::rows::DecodeError;

fn var_from_row(row: &PgRow) -> Result<EnvVar, Failure> {
    let name: String = row.try_get("name")?;
    let plain: Option<String> = row.try_get("plain")?;
    let nonce: Option<Vec<u8>> = row.try_get("nonce")?;
    let ciphertext: Option<Vec<u8>> = row.try_get("ciphertext")?;
    let value = match (plain, nonce, ciphertext) {
        (Some(p), None, None) => EnvValue::Plain(p),
        (None, Some(nonce), Some(ciphertext)) => EnvValue::Secret(Sealed { nonce, ciphertext }),
        // The CHECK constraint `env_vars_value_check` rules this out.
        _ => return Err(DecodeError::new("env_vars.plain", "both or neither form").into()),
    };
    Ok(EnvVar {
        name: EnvName::parse(&name).map_err(|_| DecodeError::new("env_vars.name", name))?,
        value,
        updated_at: row.try_get("updated_at")?,
    })
}

fn key_from_row(row: &PgRow) -> Result<WrappedKey, Failure> {
    Ok(WrappedKey {
        master_key_id: row.try_get("master_key_id")?,
        sealed: Sealed {
            nonce: row.try_get("nonce")?,
            ciphertext: row.try_get("ciphertext")?,
        },
    })
}

#[async_trait]
impl EnvRepository for PostgresStore {
    async fn env_put(
        &self,
        app: AppId,
        name: &EnvName,
        value: EnvValue,
        max_vars: usize,
    ) -> Result<bool, EnvRepoError> {
        let mut tx = self.pool.begin().await.map_err(env_error)?;
        let exists: Option<i32> =
            sqlx::query_scalar("SELECT 1 FROM apps WHERE id = $1 FOR NO KEY UPDATE")
                .bind(app.as_uuid())
                .fetch_optional(&mut *tx)
                .await
                .map_err(env_error)?;
        if exists.is_none() {
            return Err(EnvRepoError::AppNotFound);
        }
        let row = sqlx::query(
            "SELECT count(*) AS n, count(*) FILTER (WHERE name = $2) AS mine \
             FROM env_vars WHERE app_id = $1",
        )
        .bind(app.as_uuid())
        .bind(name.as_str())
        .fetch_one(&mut *tx)
        .await
        .map_err(env_error)?;
        let held: i64 = row.try_get("n").map_err(env_error)?;
        let created = row.try_get::<i64, _>("mine").map_err(env_error)? == 0;
        if created && usize::try_from(held).unwrap_or(usize::MAX) >= max_vars {
            return Err(EnvRepoError::TooMany(max_vars));
        }
        let (plain, sealed) = match value {
            EnvValue::Plain(p) => (Some(p), None),
            EnvValue::Secret(s) => (None, Some(s)),
        };
        sqlx::query(
            "INSERT INTO env_vars (app_id, name, plain, nonce, ciphertext, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6) \
             ON CONFLICT (app_id, name) DO UPDATE SET plain = EXCLUDED.plain, \
                 nonce = EXCLUDED.nonce, ciphertext = EXCLUDED.ciphertext, \
                 updated_at = EXCLUDED.updated_at",
        )
        .bind(app.as_uuid())
        .bind(name.as_str())
        .bind(plain)
        .bind(sealed.as_ref().map(|s| s.nonce.as_slice()))
        .bind(sealed.as_ref().map(|s| s.ciphertext.as_slice()))
        .bind(picloud_core::clock::now())
        .execute(&mut *tx)
        .await
        .map_err(env_error)?;
        tx.commit().await.map_err(env_error)?;
        Ok(created)
    }

    async fn env_delete(&self, app: AppId, name: &EnvName) -> Result<bool, EnvRepoError> {
        let done = sqlx::query("DELETE FROM env_vars WHERE app_id = $1 AND name = $2")
            .bind(app.as_uuid())
            .bind(name.as_str())
            .execute(&self.pool)
            .await
            .map_err(env_error)?;
        Ok(done.rows_affected() > 0)
    }

    async fn env_list(&self, app: AppId) -> Result<Vec<EnvVar>, EnvRepoError> {
        let rows = sqlx::query(
            "SELECT name, plain, nonce, ciphertext, updated_at FROM env_vars \
             WHERE app_id = $1 ORDER BY name",
        )
        .bind(app.as_uuid())
        .fetch_all(&self.pool)
        .await
        .map_err(env_error)?;
        rows.iter()
            .map(var_from_row)
            .collect::<Result<_, _>>()
            .map_err(env_error)
    }

    async fn data_key(&self, app: AppId) -> Result<Option<WrappedKey>, EnvRepoError> {
        let row = sqlx::query(
            "SELECT master_key_id, nonce, ciphertext FROM app_data_keys WHERE app_id = $1",
        )
        .bind(app.as_uuid())
        .fetch_optional(&self.pool)
        .await
        .map_err(env_error)?;
        row.as_ref()
            .map(key_from_row)
            .transpose()
            .map_err(env_error)
    }

    async fn data_key_insert(
        &self,
        app: AppId,
        key: WrappedKey,
    ) -> Result<WrappedKey, EnvRepoError> {
        let inserted = sqlx::query(
            "INSERT INTO app_data_keys (app_id, master_key_id, nonce, ciphertext) \
             VALUES ($1, $2, $3, $4) ON CONFLICT (app_id) DO NOTHING",
        )
        .bind(app.as_uuid())
        .bind(&key.master_key_id)
        .bind(&key.sealed.nonce)
        .bind(&key.sealed.ciphertext)
        .execute(&self.pool)
        .await
        .map_err(env_error)?;
        if inserted.rows_affected() == 1 {
            return Ok(key);
        }
        // Another writer was first (the insert waited for it to commit):
        // its key, which a new statement sees. Gone again only if the app
        // was deleted meanwhile.
        self.data_key(app).await?.ok_or(EnvRepoError::AppNotFound)
    }

    async fn data_keys(&self) -> Result<Vec<(AppId, WrappedKey)>, EnvRepoError> {
        let rows = sqlx::query(
            "SELECT app_id, master_key_id, nonce, ciphertext FROM app_data_keys ORDER BY app_id",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(env_error)?;
        rows.iter()
            .map(|row| {
                let app: Uuid = row.try_get("app_id")?;
                Ok((AppId::from(app), key_from_row(row)?))
            })
            .collect::<Result<_, Failure>>()
            .map_err(env_error)
    }

    async fn data_key_replace(
        &self,
        app: AppId,
        old: &WrappedKey,
        new: WrappedKey,
    ) -> Result<(), EnvRepoError> {
        let done = sqlx::query(
            "UPDATE app_data_keys SET master_key_id = $5, nonce = $6, ciphertext = $7 \
             WHERE app_id = $1 AND master_key_id = $2 AND nonce = $3 AND ciphertext = $4",
        )
        .bind(app.as_uuid())
        .bind(&old.master_key_id)
        .bind(&old.sealed.nonce)
        .bind(&old.sealed.ciphertext)
        .bind(&new.master_key_id)
        .bind(&new.sealed.nonce)
        .bind(&new.sealed.ciphertext)
        .execute(&self.pool)
        .await
        .map_err(env_error)?;
        if done.rows_affected() == 1 {
            return Ok(());
        }
        let app_exists: bool =
            sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM apps WHERE id = $1)")
                .bind(app.as_uuid())
                .fetch_one(&self.pool)
                .await
                .map_err(env_error)?;
        Err(if app_exists {
            EnvRepoError::KeyChanged
        } else {
            EnvRepoError::AppNotFound
        })
    }
}
