#!/usr/bin/env bash
# Lab topic "limits" (docs/LAB.md): limits and floods have labs of their
# own; this topic points to them with their one-line summaries and the
# commands to run. It runs nothing itself (each of those labs takes
# minutes).   scripts/lab.sh limits
set -euo pipefail
[ "${1:-}" = --help ] && { sed -n '2,5p' "$0" | sed 's/^# //'; exit 0; }
source "$(dirname "$0")/common.sh"
lab_init limits
lab_q "How many connections can one server hold, and what does a flood do to it?"
for f in scripts/scale.sh scripts/doslab.sh docs/SCALE.md docs/ROBUSTNESS.md; do
  # The first comment line after the shebang, or the first heading's
  # paragraph: the files' own summaries, so this cannot go stale.
  # Its first sentence, joined across lines.
  s=$(awk -v sh="${f##*.}" '
    sh == "sh" { if (NR == 1) next; if (!/^#/) exit; sub(/^# ?/, "") }
    sh != "sh" { if (NR == 1 || (!NF && !t)) next; if (!NF) exit }
    { t = t (t ? " " : "") $0; if (t ~ /[.] /) exit }
    END { sub(/[.] .*/, ".", t); print t }' "$LAB_REPO/$f")
  printf '  %-20s %s\n\n' "$f" "$s" >>"$LAB_TMP/pointers"
  lab_expect_true "$f exists" test -s "$LAB_REPO/$f"
done
lab_show "$LAB_TMP/pointers"
lab_note "sudo scripts/scale.sh     connections per server until memory or fds run out (docs/SCALE.md)"
lab_note "sudo scripts/doslab.sh    SYN, connection and UDP floods against sluice's defenses (docs/ROBUSTNESS.md)"
lab_done
