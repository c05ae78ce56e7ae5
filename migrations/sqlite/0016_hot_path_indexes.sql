-- Indexes for the queries that run on every dialog turn and every reminder or reconciliation
-- round, so their cost follows the rows they return, not the rows ever stored.

-- Reminders, both reconcilers and the CRM reconciler read a business's bookings by start time.
CREATE INDEX bookings_by_start ON bookings (business_id, start_at);

-- A pressed button is logged by its label: the bot's latest line with buttons in the chat.
CREATE INDEX chat_log_latest ON chat_log (business_id, chat_key, id);

-- Delivered jobs past `sync.done_retention` are removed from the queue table by finish time.
CREATE INDEX sync_jobs_done_by_finish ON sync_jobs (finished_at) WHERE state = 'done';
