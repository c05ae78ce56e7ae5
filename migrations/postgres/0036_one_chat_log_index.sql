-- Every line a chat turn logs went into two indexes led by (business_id, chat_key): one
-- ordered by time, one by id. A chat's lines get ids in the order they are said, so the one
-- by id serves every read of a chat (its latest buttons, its lines in a period, its last
-- lines), and each turn's commit writes one index entry less per line.
DROP INDEX chat_log_by_chat;
