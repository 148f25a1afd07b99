"""Alert notifications: the worker's delivery loop and what it sends (issue 16).

The path of a message, and which module keeps which promise:

- common/db/alerts.py stores a transition and, in the same transaction,
  queues one `notifications` row per contact point of the rule
  (common/db/notifications.py): no transition without its messages, and the
  ingest path never waits for a network send.
- delivery.py, a task of `dashboard-worker run` beside the maintenance,
  claims due rows for a lease (FOR UPDATE SKIP LOCKED), so with any number of
  workers each attempt is made by one of them; it also queues the repeats of
  rules still firing.
- senders.py makes the attempt (webhook, Slack; e-mail through mail.py) and classifies the
  outcome: delivered; retrying with exponential backoff (5xx, 408, 429,
  timeouts, connection errors) until common.db.DELIVERY_WINDOW has passed;
  failed at once (other 4xx, redirects, refused addresses).
- guard.py refuses URLs that are not http(s) and addresses that are loopback,
  link-local, private or otherwise not global unless --notify-allow lists
  them; it checks the addresses a name resolves to at connect time, so a name
  that changes its answer (DNS rebinding) cannot reach an internal service.
- messages.py builds the bodies (the JSON the README documents).

A worker that dies mid-attempt leaves its claim to expire: the message is
then sent again (at least once in that case; receivers deduplicate on the
X-Dashboard-Delivery header).
"""
