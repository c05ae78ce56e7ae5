-- Vendors' rate limits kept by every instance sharing the store: per vendor account (or egress
-- address), the time the next request may leave, in milliseconds since the epoch. One row an
-- account, moved forward by one atomic statement per request (connectors/pacing.rs).
CREATE TABLE vendor_pace (
    account TEXT PRIMARY KEY,
    next_at BIGINT NOT NULL
);
