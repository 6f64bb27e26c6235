-- The W3C trace context of the request that wrote each event (runtime::trace), so its
-- delivery and its consumer join that request's trace. NULL for events written outside
-- a trace (and for events written before this migration).
ALTER TABLE outbox ADD COLUMN traceparent TEXT;
ALTER TABLE outbox ADD COLUMN tracestate TEXT;
