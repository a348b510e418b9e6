#!/usr/bin/env bash
# The nightly report page in a real headless browser (Debian's chromium):
# loads REPORT from disk, and checks in the DOM chromium built that the page
# rendered its findings table with every title of WORKDIR... (the findings'
# `description` files) and its plots (inline SVG); keeps a screenshot.
#
#   ci/report-browser-check.sh REPORT.html SCREENSHOT.png WORKDIR...
# Exit 0 pass, 1 fail, 2 no chromium (ci/setup.sh installs it).
set -uo pipefail
report=${1:?usage: report-browser-check.sh REPORT.html SCREENSHOT.png WORKDIR...}
shot=${2:?usage: report-browser-check.sh REPORT.html SCREENSHOT.png WORKDIR...}
shift 2
browser=$(command -v chromium || command -v chromium-browser) ||
    { echo "report-browser-check: no chromium: apt-get install chromium (ci/setup.sh does)" >&2; exit 2; }
# Root in CI: no sandbox; no GPU, no D-Bus in a container.
flags=(--headless --no-sandbox --disable-gpu --hide-scrollbars --no-first-run)
url="file://$(realpath "$report")"
dom=$(timeout 120 "$browser" "${flags[@]}" --dump-dom "$url" 2>/dev/null)
[[ -n $dom ]] || { echo "report-browser-check: FAIL: chromium rendered nothing from $url" >&2; exit 1; }
fail=0
# The findings table as the browser parsed it: the text of its rows' first cells.
rows=$(python3 - "$dom" <<'EOF'
import sys
from html.parser import HTMLParser

class Rows(HTMLParser):
    def __init__(self):
        super().__init__()
        self.section = None
        self.heading = False
        self.cell = None
        self.first = []
        self.svgs = 0

    def handle_starttag(self, tag, attrs):
        if tag == "h2":
            self.heading = True
            self.section = ""
        elif tag == "svg":
            self.svgs += 1
        elif tag == "tr":
            self.col = 0
        elif tag == "td" and self.section == "Findings":
            self.col += 1
            if self.col == 1:
                self.cell = ""

    def handle_endtag(self, tag):
        if tag == "h2":
            self.heading = False
        elif tag == "td" and self.cell is not None:
            self.first.append(" ".join(self.cell.split()))
            self.cell = None

    def handle_data(self, data):
        if self.heading:
            self.section += data.strip()
        elif self.cell is not None:
            self.cell += data

p = Rows()
p.feed(sys.argv[1])
print(f"svg {p.svgs}")
for t in p.first:
    print(t)
EOF
)
svgs=$(head -n1 <<<"$rows" | cut -d' ' -f2)
# Programs and findings over time where a workdir has a campaign's own
# counters (fuzz.json, soak.json) or, merged, its shards' (shards/*.json),
# kernel edges where it also has coverage (a kernel with KCOV).
want=0
for w in "$@"; do
    if [[ -f $w/fuzz.json || -f $w/soak.json ]] || compgen -G "$w/shards/*.json" >/dev/null; then
        [[ $want -lt 2 ]] && want=2
        compgen -G "$w/cover/*.edges" >/dev/null && want=3
    fi
done
[[ ${svgs:-0} -ge $want ]] || { echo "report-browser-check: FAIL: $svgs plots (inline SVG) rendered, want $want" >&2; fail=1; }
n=0
for w in "$@"; do
    for d in "$w"/findings/*/description; do
        [[ -f $d ]] || continue
        title=$(head -n1 "$d")
        n=$((n + 1))
        grep -qxF "$title" <(tail -n +2 <<<"$rows") ||
            { echo "report-browser-check: FAIL: the findings table lacks \`$title\`" >&2; fail=1; }
    done
done
mkdir -p "$(dirname "$shot")"
timeout 120 "$browser" "${flags[@]}" --window-size=1280,1400 --screenshot="$shot" "$url" >/dev/null 2>&1
[[ -s $shot ]] || { echo "report-browser-check: FAIL: no screenshot at $shot" >&2; fail=1; }
[[ $fail -eq 0 ]] && echo "report-browser-check: ok: chromium rendered $svgs plots and all $n findings in the table; screenshot $shot"
exit $fail
