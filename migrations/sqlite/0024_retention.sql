-- The retention purge walks each table by age, per business.
CREATE INDEX chat_log_by_time ON chat_log (business_id, at);
CREATE INDEX dialogs_by_age ON dialogs (business_id, updated_at);
CREATE INDEX sync_inbox_unpurged ON sync_inbox (business_id, received_at) WHERE body <> '';
