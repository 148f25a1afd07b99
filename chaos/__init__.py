"""A chaos run: compound faults under live clients, then every value checked.

`python -m chaos` starts its own PostgreSQL and Redis (on free loopback
ports, never the machine's), two `dashboard-server` processes, two
`dashboard-worker`s, a push client writing numbered values and verifying
WebSocket clients; for N seconds it kills, stalls and restarts those
processes, cuts client sockets mid-frame, bursts pushes and edits the
dashboards, from a printed seed. Then it checks that each client saw every
stored value once, in order (chaos.verify says exactly what that means).

processes.py  the processes the run owns, and the signals it sends them
world.py      dashboards, metrics, users and tokens of the run
clients.py    the verifying clients (the documented protocol only)
load.py       the push client and the editor
faults.py     the fault schedule and the time each fault takes to heal
verify.py     the end-of-run replay against PostgreSQL
report.py     the JSON report and the README table
run.py        the run from start to stop
"""
