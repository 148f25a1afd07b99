# Sourced by scripts/up and scripts/test: a Python 3.11+ virtualenv in .venv.
VENV="${VENV:-.venv}"
if [ ! -x "$VENV/bin/python" ]; then
    PYTHON="${PYTHON:-$(command -v python3.11 || command -v python3 || true)}"
    if [ -z "$PYTHON" ] || ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
        echo "Python 3.11 or newer is needed (set PYTHON=/path/to/python3.11)" >&2
        exit 1
    fi
    "$PYTHON" -m venv "$VENV"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check --upgrade pip
fi
