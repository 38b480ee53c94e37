#!/usr/bin/env bash
# Fetches real domain corpora from Debian packages as plain text, for the
# continual_domains example and the experiment:
#
#   DEST/linux-doc/   the Linux kernel's documentation (reStructuredText), from linux-doc
#   DEST/python-doc/  the Python documentation sources, from python3.x-doc
#   DEST/fortunes/    fortune cookies (general English), from fortunes
#
# DEST defaults to .cache/domains. Each corpus is a seeded sample of whole
# files of about SOFTMASK_DOMAIN_BYTES bytes (default 2000000), written as
# .txt files: the same packages give the same text. Needs apt-get (as root
# it refreshes empty or stale package lists itself), dpkg-deb and python3;
# nothing is installed.
set -euo pipefail
cd "$(dirname "$0")/.."
dest="${1:-.cache/domains}"
max_bytes="${SOFTMASK_DOMAIN_BYTES:-2000000}"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

# The versioned packages behind the metapackages.
resolve() { apt-cache depends "$1" 2>/dev/null | awk '/Depends:/ {print $2; exit}'; }
download() {
  kernel="$(resolve linux-doc)"
  python="$(resolve python3-doc)"
  [ -n "$kernel" ] && [ -n "$python" ] &&
    (cd "$tmp" && apt-get download -q "$kernel" "$python" fortunes)
}
# Empty or stale package lists (a version the mirror no longer serves) are
# refreshed once, as root; others are told how.
if ! download; then
  if [ "$(id -u)" = 0 ]; then
    echo "refreshing the package lists (apt-get update) and trying again" >&2
    apt-get update -q >/dev/null
    download
  else
    echo "apt-get could not fetch linux-doc, python3-doc or fortunes: run 'apt-get update' first" >&2
    exit 1
  fi
fi
for deb in "$tmp"/*.deb; do dpkg-deb -x "$deb" "$tmp/root"; done

python3 - "$tmp/root" "$dest" "$max_bytes" <<'PY'
import gzip, os, random, re, sys

root, dest, max_bytes = sys.argv[1], sys.argv[2], int(sys.argv[3])

def files(base, pattern):
    out = []
    for d, _, names in os.walk(base):
        out += [os.path.join(d, n) for n in names if re.search(pattern, n)]
    return sorted(out)

def read(path):
    data = open(path, "rb").read()
    if path.endswith(".gz"):
        data = gzip.decompress(data)
    return data.decode("utf-8", "replace")

def fortunes(path):
    # Cookies are separated by lines holding a single '%': one paragraph each.
    return "\n\n".join(c.strip() for c in read(path).split("\n%\n") if c.strip()) + "\n"

def write(name, sources, convert=read):
    rng = random.Random(0)
    sources = list(sources)
    rng.shuffle(sources)
    out = os.path.join(dest, name)
    os.makedirs(out, exist_ok=True)
    for old in os.listdir(out):
        os.remove(os.path.join(out, old))
    total = 0
    for i, src in enumerate(sources):
        if total >= max_bytes:
            break
        text = convert(src)
        total += len(text.encode())
        with open(os.path.join(out, f"{i:05d}.txt"), "w", encoding="utf-8") as f:
            f.write(text)
    print(f"{name}: {total} bytes from {min(i + 1, len(sources))} of {len(sources)} files into {out}")

share = os.path.join(root, "usr", "share")
kernel = [d for d in os.listdir(os.path.join(share, "doc")) if d.startswith("linux-doc")][0]
write("linux-doc", files(os.path.join(share, "doc", kernel, "Documentation"), r"\.rst(\.gz)?$"))
pydoc = [d for d in os.listdir(os.path.join(share, "doc")) if re.fullmatch(r"python3\.\d+", d)][0]
write("python-doc", files(os.path.join(share, "doc", pydoc, "html", "_sources"), r"\.rst\.txt$"))
cookies = os.path.join(share, "games", "fortunes")  # the top folder only: off/ is not general text
write("fortunes", sorted(os.path.join(cookies, n) for n in os.listdir(cookies)
                         if re.fullmatch(r"[a-z-]+", n) and os.path.isfile(os.path.join(cookies, n))), fortunes)
PY
