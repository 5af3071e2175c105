-- An app's allowlist of outbound hosts for its scripts' `http::…` calls:
-- host names, `*.domain` wildcards or IP literals, checked by core. NULL:
-- any host the instance's egress rule allows. It goes with its app row.
ALTER TABLE apps ADD COLUMN egress_hosts text[];
