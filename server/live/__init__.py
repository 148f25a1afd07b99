"""The live path: a dashboard's WebSocket, from the Redis subscription to the bytes on a socket.

Everything a dashboard socket needs is here; the pages and JSON endpoints
(server/*.py) use it only through the hub, the registry, the config cache
and the pushes. docs/protocol.md is the wire protocol.

A value's path, after the worker or the push API committed it and published
it on the dashboard's channel (common/events.py):

1. `hub.py` holds the process's one Redis subscription. A dashboard's
   channel is joined with its first local socket and left after its last.
2. `gaps.py` (`LiveStreams`) hands each dashboard's batches over in the order
   they were stored (`seq`), reading from PostgreSQL any batch whose publish
   was lost; past what it can fill it closes the sockets with RESYNC.
3. The hub builds each value's frame once (`updates.py`, also the batched
   `metric_updates` form) and hands every subscribed connection its share,
   one call per connection per event-loop turn.
4. `connection.py` buffers per client and writes once per turn; a client
   that stops reading is closed with SLOW_CONSUMER, never slowing others.
5. `transport.py` is RFC 6455 on the connection taken over from aiohttp
   after the handshake (`frames.py`: frames in and out), with the heartbeat.

A socket's set-up and its client messages are `endpoint.py`; what it is sent
as history is `history.py`. Around them: `configcache.py` (each dashboard's
config read and encoded once per process), `configpush.py` and
`preferencespush.py` (edits reach open pages), `alertstate.py` (the `alerts`
message), `registry.py` and `revocation.py` (open sockets follow access),
`sharedreads.py` (identical reads of many sockets made once), `summaries.py`
(a range's statistics), `closecodes.py` (every close code we send).

The invariant: no gap, no duplicate
-----------------------------------
One order throughout: the stored value's id (a larger id was stored later).
Between history and live values the hand-over goes:

* `history.send_histories` holds the connection (`ClientConnection.hold`),
  subscribes it in the hub, and only then reads the history. Live values
  arriving meanwhile wait in the connection.
* The read starts after the subscription (`sharedreads.py` never answers
  with a read that began before its asker asked), so the history and the
  held values overlap rather than leave a gap between them.
* `ClientConnection.release(last_sent)` sends the held values above each
  metric's `last_id` (the history's newest id) and keeps that floor until a
  newer value arrives or FLOOR_SECONDS pass, dropping a value the history
  already had that was still on its way from Redis: no duplicate.
* `gaps.py` makes the live stream itself complete and ordered by id; a
  client that reconnects sends `resume` with its last id per metric and gets
  what was stored after it, through the same hold/release.
"""
