-- A client's erasure waiting for deliveries about them to end (`zapis forget`). The row goes
-- once the erasure is done; the journal keeps the record with the phone masked.
CREATE TABLE erasure_requests (
    business_id  TEXT NOT NULL,
    phone        TEXT NOT NULL,
    requested_at BIGINT NOT NULL,
    PRIMARY KEY (business_id, phone)
);
