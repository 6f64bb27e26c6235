-- Processed event ids are pruned once older than EVENT_DEDUP_RETENTION_SECS
-- (runtime::retention): the pruning reads them by age.
CREATE INDEX processed_events_processed_at ON processed_events (processed_at);
