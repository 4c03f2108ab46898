"""An independent reader and writer of Longhorn's backupstore layout for
backing images (../shared/notes/backupstore.md), for the backup tests: it
shares no code with bimfs, only the format (json, hashlib, gzip and
lz4.frame from Debian's python3-lz4).

    store = VfsStore(root)                    # vfs:///root
    store = S3Store(srv, "prefix")            # s3server.S3Server objects
    cfg = read_cfg(store, "parrot")           # the parsed backing-image.cfg
    check_cfg_types(cfg, complete=True)       # the field types Go's encoding/json writes
    sha = reassemble(store, "parrot", path)   # blocks checked and written at their offsets
"""

import datetime
import gzip
import hashlib
import json
import os
import re

import lz4.frame

BLOCK_SIZE = 2 * 1024 * 1024
CFG_DIR = "backupstore/backing-images/backing-images"
BLOCK_DIR = "backupstore/backing-images/blocks"
FIELD_ORDER = ["Name", "Size", "BlockCount", "Checksum", "Labels", "CompressionMethod",
               "CreatedTime", "CompleteTime", "Secret", "SecretNamespace", "ProcessingBlocks"]
LZ4_MAGIC = b"\x04\x22\x4d\x18"
GZIP_HEADER = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"  # Go's: MTIME 0, OS 255


def checksum(data):
    """util.GetChecksum: the first 64 hex digits of the SHA-512."""
    return hashlib.sha512(data).hexdigest()[:64]


def lock_dir():
    """getLockPath("BACKINGIMAGE"): the volume path scheme with the checksum of the name."""
    ck = checksum(b"BACKINGIMAGE")
    return "backupstore/volumes/%s/%s/BACKINGIMAGE/locks" % (ck[0:2], ck[2:4])


def cfg_path(name):
    return "%s/%s/backing-image.cfg" % (CFG_DIR, name)


def block_path(sum_hex):
    return "%s/%s/%s/%s.blk" % (BLOCK_DIR, sum_hex[0:2], sum_hex[2:4], sum_hex)


class VfsStore:
    def __init__(self, root):
        self.root = str(root)

    def read(self, path):
        with open(os.path.join(self.root, path), "rb") as f:
            return f.read()

    def write(self, path, data):
        full = os.path.join(self.root, path)
        os.makedirs(os.path.dirname(full), exist_ok=True)
        with open(full, "wb") as f:
            f.write(data)

    def exists(self, path):
        return os.path.isfile(os.path.join(self.root, path))

    def files(self, under="backupstore"):
        """Every file under a directory, as target paths, sorted."""
        out = []
        for d, _, names in os.walk(os.path.join(self.root, under)):
            out += [os.path.relpath(os.path.join(d, n), self.root) for n in names]
        return sorted(out)

    def blocks(self):
        return [p for p in self.files(BLOCK_DIR) if p.endswith(".blk")]


class S3Store:
    def __init__(self, srv, prefix=""):
        self.srv = srv
        self.prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""

    def read(self, path):
        return self.srv.get(self.prefix + path)

    def write(self, path, data):
        self.srv.put(self.prefix + path, data)

    def exists(self, path):
        return (self.prefix + path) in self.srv.keys()

    def files(self, under="backupstore"):
        return sorted(k[len(self.prefix):] for k in self.srv.keys()
                      if k.startswith(self.prefix + under + "/"))

    def blocks(self):
        return [p for p in self.files(BLOCK_DIR) if p.endswith(".blk")]


def read_cfg(store, name):
    return json.loads(store.read(cfg_path(name)))


def cfg_keys(store, name):
    """The cfg's keys in the order they were written."""
    return list(json.loads(store.read(cfg_path(name)),
                           object_pairs_hook=lambda pairs: [k for k, _ in pairs]))


def is_rfc3339_utc(text):
    try:
        datetime.datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ")
        return True
    except (TypeError, ValueError):
        return False


def check_cfg_types(cfg, complete):
    """Assert the types Longhorn's struct gets from Go's encoding/json."""
    assert isinstance(cfg["Name"], str) and cfg["Name"], cfg
    assert isinstance(cfg["Size"], str) and re.fullmatch(r"[1-9][0-9]*", cfg["Size"]), \
        "Size must be a JSON string of digits: %r" % cfg["Size"]
    assert isinstance(cfg["BlockCount"], str) and re.fullmatch(r"0|[1-9][0-9]*",
                                                               cfg["BlockCount"]), \
        "BlockCount must be a JSON string of digits: %r" % cfg["BlockCount"]
    assert re.fullmatch(r"[0-9a-f]{128}", cfg["Checksum"]), "Checksum: %r" % cfg["Checksum"]
    assert cfg["CompressionMethod"] in ("lz4", "gzip", "none"), cfg["CompressionMethod"]
    assert is_rfc3339_utc(cfg["CreatedTime"]), "CreatedTime: %r" % cfg["CreatedTime"]
    assert cfg["Secret"] == "" and cfg["SecretNamespace"] == "", cfg
    if not complete:
        assert cfg["CompleteTime"] == "", "an initial record has no CompleteTime"
        assert cfg["ProcessingBlocks"] is None and cfg["Labels"] is None, cfg
        assert cfg["BlockCount"] == "0" and "Blocks" not in cfg, cfg
        return
    assert is_rfc3339_utc(cfg["CompleteTime"]), "CompleteTime: %r" % cfg["CompleteTime"]
    assert cfg["ProcessingBlocks"] == {"Blocks": {}}, cfg["ProcessingBlocks"]
    assert isinstance(cfg["Labels"], dict), cfg["Labels"]
    blocks = cfg.get("Blocks", [])
    assert int(cfg["BlockCount"]) == len(blocks), "BlockCount is not the number of mappings"
    offsets = [b["Offset"] for b in blocks]
    assert all(type(o) is int for o in offsets), "Offset must be a JSON number"
    assert offsets == sorted(offsets) and len(set(offsets)) == len(offsets), \
        "Blocks are not sorted by offset"
    assert all(o % BLOCK_SIZE == 0 and o < int(cfg["Size"]) for o in offsets), offsets
    assert all(re.fullmatch(r"[0-9a-f]{64}", b["BlockChecksum"]) for b in blocks), blocks


def decompress(method, blob):
    if method == "lz4":
        assert blob[:4] == LZ4_MAGIC, "not an LZ4 frame: %r" % blob[:8]
        return lz4.frame.decompress(blob)
    if method in ("gzip", ""):
        return gzip.decompress(blob)
    return blob


def reassemble(store, name, out_path):
    """Restore the backup as Longhorn does (create, truncate to Size, each
    block decompressed, re-hashed and written at its offset); the SHA-512 of
    the result."""
    cfg = read_cfg(store, name)
    size = int(cfg["Size"])
    with open(out_path, "wb") as f:
        f.truncate(size)
        for b in cfg.get("Blocks") or []:
            data = decompress(cfg["CompressionMethod"], store.read(block_path(b["BlockChecksum"])))
            assert checksum(data) == b["BlockChecksum"], \
                "block at %d does not match its name" % b["Offset"]
            assert len(data) == min(BLOCK_SIZE, size - b["Offset"]), \
                "block at %d has %d bytes" % (b["Offset"], len(data))
            f.seek(b["Offset"])
            f.write(data)
    h = hashlib.sha512()
    with open(out_path, "rb") as f:
        for chunk in iter(lambda: f.read(4 * 1024 * 1024), b""):
            h.update(chunk)
    return h.hexdigest()


def lock_text(name, type_, acquired):
    return json.dumps({"Name": name, "Type": type_, "Acquired": acquired},
                      separators=(",", ":")).encode()


def write_lock(store, name, type_, acquired=True):
    """A lock file as another writer (Longhorn) leaves it; returns its path."""
    path = "%s/%s.lck" % (lock_dir(), name)
    store.write(path, lock_text(name, type_, acquired))
    return path
