-- The periodic 1C stock check (OData): every item seen in the balance and whether it is at or
-- below the low-stock threshold now. An item is alerted when it turns low and again only after
-- it has recovered; an item seen before and missing from the balance is sold out.

CREATE TABLE onec_stock_watch (
    business_id TEXT NOT NULL,
    item        TEXT NOT NULL,
    low         BIGINT NOT NULL,
    changed_at  BIGINT NOT NULL,
    PRIMARY KEY (business_id, item)
);
