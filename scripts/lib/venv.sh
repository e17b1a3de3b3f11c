# Sourced by scripts/test and scripts/demo: `ensure_venv EXTRA` makes .venv in the
# repo root (the current directory) and installs `-e .[EXTRA]` into it.
# Versions come from constraints.txt (refreshed by scripts/lock). A stamp per extra holds the
# hash of pyproject.toml and constraints.txt, so the slow pip step runs only on a fresh machine
# or after the dependencies changed.

find_python() {
    # The project needs 3.11+; a plain `python3` may be older on some machines.
    local candidate
    for candidate in ${PYTHON:-} python3.11 python3.12 python3.13 python3; do
        if command -v "$candidate" >/dev/null 2>&1 &&
            "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
            echo "$candidate"
            return 0
        fi
    done
    echo "no Python >= 3.11 found (set PYTHON=/path/to/python3.11)" >&2
    return 1
}

ensure_venv() {
    local extra=$1 python want stamp
    # A .venv left without pip (venv interrupted, or made without the distribution's venv
    # package) is made again rather than failing the same way on every run.
    # (pip imported, not run: a bad pip.conf or PIP_* variable must not wipe a working .venv)
    if [ ! -x .venv/bin/python ] || ! .venv/bin/python -c 'import pip' >/dev/null 2>&1; then
        python=$(find_python) || return 1
        echo "creating .venv with $python" >&2
        "$python" -m venv --clear .venv || {
            echo "could not create .venv with $python (on Debian/Ubuntu install its venv" \
                "package, e.g. python3.11-venv); then run this again" >&2
            return 1
        }
    fi
    stamp=.venv/.billing-stamp-$extra
    want=$(.venv/bin/python -c \
        'import hashlib; print(hashlib.sha256(open("pyproject.toml", "rb").read()
                             + open("constraints.txt", "rb").read()).hexdigest())') ||
        return 1
    if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
        echo "installing billing[$extra] into .venv (pyproject.toml changed or new .venv)" >&2
        # Written only after a successful install, so a failed one is retried next run.
        .venv/bin/python -m pip install --quiet --disable-pip-version-check \
            -c constraints.txt -e ".[$extra]" || return 1
        echo "$want" >"$stamp"
    fi
}
