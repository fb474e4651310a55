# Sourced by scripts/run and scripts/test: make sure .venv exists and matches requirements.txt.
# Installs only when requirements.txt changed since the last install (stamp file inside .venv).

ensure_venv() {
  local python=python3.11
  if [[ ! -x .venv/bin/python ]]; then
    if ! command -v "$python" >/dev/null 2>&1; then
      echo "Parla needs Python 3.11 ('$python' not found)." >&2
      return 1
    fi
    echo "==> creating .venv with $python"
    "$python" -m venv .venv
  fi
  local stamp=.venv/.parla-requirements.sha256
  local want
  want="$(sha256sum requirements.txt | cut -d' ' -f1)"
  if [[ ! -f "$stamp" || "$(cat "$stamp")" != "$want" ]]; then
    echo "==> installing requirements.txt into .venv"
    .venv/bin/python -m pip install --disable-pip-version-check -q -r requirements.txt
    echo "$want" >"$stamp"
  fi
}
