# Sourced by scripts/run and scripts/test: make sure .venv exists and matches the requirement files.
# `ensure_venv FILE...` (default requirements.txt): scripts/run asks for the runtime
# (requirements.txt), scripts/test for the runtime and the test tools (requirements-test.txt). Each
# file has its own stamp inside .venv (.parla-<file>.sha256, its hash at the last install): a file is
# installed only when it changed since, so running one script after the other installs nothing twice.

ensure_venv() {
  local python=python3.11
  if [[ $# -eq 0 ]]; then set -- requirements.txt; fi
  if [[ ! -x .venv/bin/python ]]; then
    if ! command -v "$python" >/dev/null 2>&1; then
      echo "Parla needs Python 3.11 ('$python' not found)." >&2
      return 1
    fi
    echo "==> creating .venv with $python"
    "$python" -m venv .venv
  fi
  local file stale=()
  for file in "$@"; do
    if [[ ! -f ".venv/.parla-${file%.txt}.sha256" ||
          "$(cat ".venv/.parla-${file%.txt}.sha256")" != "$(sha256sum "$file" | cut -d' ' -f1)" ]]; then
      stale+=("$file")
    fi
  done
  if [[ ${#stale[@]} -gt 0 ]]; then
    echo "==> installing ${stale[*]} into .venv"
    # All the files asked for, in one resolution: a test tool never downgrades a runtime pin.
    .venv/bin/python -m pip install --disable-pip-version-check -q $(printf -- '-r %s ' "$@")
    for file in "$@"; do
      sha256sum "$file" | cut -d' ' -f1 >".venv/.parla-${file%.txt}.sha256"
    done
  fi
}
