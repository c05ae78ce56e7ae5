-- A client's agreement to the business's personal-data policy (152-ФЗ), given in the bot
-- before the phone: when, and a digest of the text agreed to. NULL for clients who reached us
-- otherwise (the schedule's own bookings, imports) and after `zapis forget`.
ALTER TABLE clients ADD COLUMN consent_at BIGINT;
ALTER TABLE clients ADD COLUMN consent_version TEXT;
