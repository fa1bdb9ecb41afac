"""Put a UD treebank into assets/: link it from a local directory, or download
the official release listed in project.yml's `assets` (UD English EWT r2.16,
checksummed).

    python scripts/locate_treebank.py --local /path/to/ud-english-ewt --assets assets
    python scripts/locate_treebank.py --local "" --assets assets     # download EWT
    python scripts/locate_treebank.py --local ../shared/data/ud-small/fi_tdt --treebank fi_tdt --train-split dev

Files follow the UD naming pattern, ``{treebank}-ud-{split}.conllu``. The
training file is required; dev and test are optional (without dev, the
`convert` step holds out part of train; without test, `evaluate` scores dev).
Every failure is one line on stderr and exit status 1, never a traceback.
"""
import argparse
import hashlib
import os
import shutil
import sys
import tempfile
import urllib.error
import urllib.request
from pathlib import Path
from typing import Dict, Optional

import srsly

PROJECT_DIR = Path(__file__).resolve().parent.parent
ENV_VAR = "SPACY_LSTM_TAGGER_EWT_DIR"



class TreebankError(Exception):
    pass


def info(text: str) -> None:
    print(f"[fetch] {text}", flush=True)


def md5(path: Path) -> str:
    digest = hashlib.md5()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class Treebank:
    """A treebank's files by the UD naming pattern; only the training file is required."""

    def __init__(self, name: str = "en_ewt", train: str = "train", dev: str = "dev", test: str = "test") -> None:
        self.name = name
        self.required = (train,)
        self.optional = tuple(s for s in (dev, test) if s and s != train)

    def filename(self, split: str) -> str:
        return f"{self.name}-ud-{split}.conllu"

    @property
    def splits(self):
        return self.required + self.optional

    def local_hint(self) -> str:
        return (f"set --vars.treebank_dir (or {ENV_VAR}) to a local directory holding "
                f"{self.filename(self.required[0])}")

    def how_to_fix(self, assets: Dict[str, dict]) -> str:
        if self.filename(self.required[0]) in assets:
            return f"{self.local_hint()}, or leave it empty to download UD English EWT r2.16"
        return self.local_hint()


def project_assets(project_yml: Path) -> Dict[str, dict]:
    """project.yml's assets keyed by file name (the single source of URLs and checksums)."""
    config = srsly.read_yaml(project_yml)
    return {Path(a["dest"]).name: a for a in config.get("assets", []) if "dest" in a}


def link_or_copy(src: Path, dest: Path) -> None:
    if dest.is_symlink() or dest.exists():
        dest.unlink()
    try:
        dest.symlink_to(src.resolve())
    except OSError:  # e.g. no symlink permission on Windows
        shutil.copyfile(src, dest)


def from_local(local: Path, assets_dir: Path, assets: Dict[str, dict], treebank: Treebank) -> None:
    if not local.is_dir():
        raise TreebankError(f"treebank directory {local} does not exist: {treebank.how_to_fix(assets)}")
    missing = [treebank.filename(s) for s in treebank.required if not (local / treebank.filename(s)).is_file()]
    if missing:
        raise TreebankError(f"{', '.join(missing)} not found in {local}: {treebank.how_to_fix(assets)}")
    for split in treebank.splits:
        name = treebank.filename(split)
        src, dest = local / name, assets_dir / name
        if not src.is_file():
            if dest.is_symlink():  # a link to some other local directory: stale
                dest.unlink()
            if dest.exists():
                info(f"{name}: not in {local}; keeping the existing {dest}")
            else:
                info(f"{name}: not in {local} (optional)")
            continue
        link_or_copy(src, dest)
        expected = assets.get(name, {}).get("checksum")
        if expected and md5(src) != expected:
            info(f"WARNING {name}: not byte-identical to UD {release(assets, name)} (md5 differs); using it anyway")
        info(f"{name}: linked from {src}")


def release(assets: Dict[str, dict], name: str) -> str:
    url = assets.get(name, {}).get("url", "")
    return url.split("/")[-2] if url.count("/") > 2 else "release"


def download(url: str, dest: Path, checksum: Optional[str]) -> None:
    fd, tmp_name = tempfile.mkstemp(dir=dest.parent, prefix=dest.name, suffix=".part")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=60) as response:
            shutil.copyfileobj(response, out)
        if checksum and md5(tmp) != checksum:
            raise TreebankError(f"{url} downloaded, but its md5 is not {checksum} (the one in project.yml)")
        tmp.replace(dest)
    except (urllib.error.URLError, OSError) as err:
        reason = getattr(err, "reason", None) or err
        raise TreebankError(f"could not download {url} ({reason}). Without network, {Treebank().local_hint()}") from None
    finally:
        if tmp.exists():
            tmp.unlink()


def from_release(assets_dir: Path, assets: Dict[str, dict], treebank: Treebank) -> None:
    for split in treebank.splits:
        name = treebank.filename(split)
        asset, dest = assets.get(name), assets_dir / name
        if asset is None or not asset.get("url"):
            if split in treebank.required:
                raise TreebankError(
                    f"project.yml has no download URL for {name} (only UD English EWT is fetched by URL): "
                    f"{treebank.how_to_fix(assets)}"
                )
            continue
        checksum = asset.get("checksum")
        if dest.is_file() and dest.stat().st_size > 0 and (not checksum or md5(dest) == checksum):
            info(f"{name}: already in {assets_dir}")
            continue
        info(f"{name}: downloading {asset['url']}")
        try:
            download(asset["url"], dest, checksum)
        except TreebankError as err:
            if split in treebank.required:
                raise
            info(f"WARNING {name} (optional): {err}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--local", default="", help="local treebank directory; empty = download (default: empty)")
    parser.add_argument("--assets", default="assets", help="where the .conllu files go")
    parser.add_argument("--project", default=str(PROJECT_DIR / "project.yml"), help="project.yml with the asset URLs")
    parser.add_argument("--treebank", default="en_ewt", help="UD file prefix: {treebank}-ud-{split}.conllu")
    parser.add_argument("--train-split", default="train", help="the training file's split name (required)")
    parser.add_argument("--dev-split", default="dev", help="dev split name (optional)")
    parser.add_argument("--test-split", default="test", help="test split name (optional)")
    args = parser.parse_args(argv)
    try:
        assets_dir = Path(args.assets)
        assets_dir.mkdir(parents=True, exist_ok=True)
        assets = project_assets(Path(args.project))
        treebank = Treebank(args.treebank, args.train_split, args.dev_split, args.test_split)
        if args.local.strip():
            info(f"using the local treebank in {args.local}")
            from_local(Path(args.local).expanduser(), assets_dir, assets, treebank)
        else:
            info(f"no local treebank ({ENV_VAR} / vars.treebank_dir empty): fetching the official release")
            from_release(assets_dir, assets, treebank)
    except TreebankError as err:
        print(f"[fetch] ERROR: {err}", file=sys.stderr, flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
