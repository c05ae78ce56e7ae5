-- 1C exchange. CommerceML sessions (the cookie `checkauth` hands out), the catalogue and the
-- offers (prices, stock) 1C pushes, which of our bookings 1C has taken (`query` → `success`),
-- and the documents 1C sends back (payments, statuses).

CREATE TABLE onec_sessions (
    cookie      TEXT PRIMARY KEY,
    business_id TEXT NOT NULL,
    created_at  BIGINT NOT NULL
);

CREATE TABLE onec_catalog (
    business_id TEXT NOT NULL,
    item_id     TEXT NOT NULL,
    name        TEXT NOT NULL,
    article     TEXT,
    unit        TEXT,
    groups      TEXT,
    updated_at  BIGINT NOT NULL,
    PRIMARY KEY (business_id, item_id)
);

CREATE TABLE onec_offers (
    business_id    TEXT NOT NULL,
    offer_id       TEXT NOT NULL,
    name           TEXT NOT NULL,
    price_minor    BIGINT,
    currency       TEXT,
    -- thousandths of the unit: 1C sends up to three decimals.
    quantity_milli BIGINT,
    -- JSON object warehouse id → thousandths.
    warehouses     TEXT,
    updated_at     BIGINT NOT NULL,
    PRIMARY KEY (business_id, offer_id)
);

CREATE TABLE onec_documents (
    business_id  TEXT NOT NULL,
    booking_id   TEXT NOT NULL,
    status       TEXT NOT NULL,
    queried_at   BIGINT NOT NULL,
    delivered_at BIGINT,
    PRIMARY KEY (business_id, booking_id, status)
);

CREATE TABLE onec_incoming (
    business_id TEXT NOT NULL,
    doc_id      TEXT NOT NULL,
    number      TEXT,
    booking_id  TEXT,
    paid        BIGINT NOT NULL,
    status      TEXT,
    amount      TEXT,
    received_at BIGINT NOT NULL,
    PRIMARY KEY (business_id, doc_id)
);
