//! The nodes port's cases: register, heartbeat, list and leave. Every node
//! here has a fresh id, and the cases look only at their own, so they also
//! hold on a store that other cases share.

use uuid::Uuid;

use crate::cluster::NodeRole;
use crate::ports::NodeRecord;
use crate::stores::Stores;

/// The cases of this port, in order.
#[doc(hidden)]
#[macro_export]
macro_rules! __conformance_nodes_cases {
    ($($callback:ident)::+; $($args:tt)*) => {
        $($callback)::+! { $($args)* nodes =>
            nodes_register_heartbeat_and_leave,
            nodes_register_replaces_and_lists_by_start,
        }
    };
}

fn node(role: NodeRole, started_secs_ago: i64) -> NodeRecord {
    let at = crate::clock::now() - chrono::Duration::seconds(started_secs_ago);
    NodeRecord {
        id: Uuid::new_v4(),
        role,
        address: "127.0.0.1:8081".into(),
        version: "0.1.0".into(),
        started_at: at,
        heartbeat_at: at,
        stats: "{}".into(),
    }
}

async fn mine(stores: &Stores, ids: &[Uuid]) -> Vec<NodeRecord> {
    stores
        .nodes
        .nodes()
        .await
        .unwrap()
        .into_iter()
        .filter(|n| ids.contains(&n.id))
        .collect()
}

/// A registered node is listed as registered; a heartbeat moves its time
/// and stats (and says `true`); after `leave` it is gone, a heartbeat says
/// `false`, and leaving again is fine.
pub async fn nodes_register_heartbeat_and_leave(stores: Stores) {
    let n = node(NodeRole::Worker, 10);
    stores.nodes.register(&n).await.unwrap();
    assert_eq!(mine(&stores, &[n.id]).await, vec![n.clone()]);
    let at = crate::clock::now();
    let beat = stores
        .nodes
        .heartbeat(n.id, at, r#"{"workers":2}"#)
        .await
        .unwrap();
    assert!(beat, "a registered node's heartbeat is taken");
    let listed = mine(&stores, &[n.id]).await;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].heartbeat_at, at);
    assert_eq!(listed[0].stats, r#"{"workers":2}"#);
    assert_eq!(listed[0].started_at, n.started_at, "the start stays");
    stores.nodes.leave(n.id).await.unwrap();
    assert!(mine(&stores, &[n.id]).await.is_empty());
    let beat = stores.nodes.heartbeat(n.id, at, "{}").await.unwrap();
    assert!(!beat, "a node that left has no heartbeat to take");
    stores.nodes.leave(n.id).await.unwrap();
}

/// Registering an id again replaces its row; the list is by start, oldest
/// first, with every role kept.
pub async fn nodes_register_replaces_and_lists_by_start(stores: Stores) {
    let old = node(NodeRole::Api, 60);
    let young = node(NodeRole::All, 5);
    stores.nodes.register(&young).await.unwrap();
    stores.nodes.register(&old).await.unwrap();
    assert_eq!(
        mine(&stores, &[old.id, young.id]).await,
        vec![old.clone(), young.clone()]
    );
    let moved = NodeRecord {
        address: "127.0.0.1:9090".into(),
        role: NodeRole::Worker,
        ..young.clone()
    };
    stores.nodes.register(&moved).await.unwrap();
    assert_eq!(
        mine(&stores, &[old.id, young.id]).await,
        vec![old.clone(), moved]
    );
    stores.nodes.leave(old.id).await.unwrap();
    stores.nodes.leave(young.id).await.unwrap();
}
