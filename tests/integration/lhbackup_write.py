"""Writes a backing-image backup the way Longhorn's backupstore lays it out, with
code that shares nothing with bimfs (../shared/notes/backupstore.md, A1-A4):

    <root>/backupstore/backing-images/backing-images/<name>/backing-image.cfg
    <root>/backupstore/backing-images/blocks/<c[0:2]>/<c[2:4]>/<c>.blk

Blocks are 2 MiB (the last one short when the size is not a multiple of it),
named by the first 64 hex digits of the SHA-512 of the uncompressed block, and
stored compressed: an lz4 frame (python3-lz4, 4 MB blocks, content checksum, no
content size: what pierrec/lz4 writes), gzip (Go's header: MTIME 0, OS 255) or
none. Which blocks are stored follows Longhorn's manager: for a raw image, every
2 MiB block holding at least one allocated sector (SEEK_DATA/SEEK_HOLE here,
FIEMAP there); with all_blocks, every block (its qcow2 path); the others are
holes and read as zeros. The cfg is the Go struct's JSON: Size and BlockCount
are strings, Offset a number, Blocks sorted by offset, ProcessingBlocks null or
{"Blocks": {}}.

    info = write_backup("/tmp/target", "parrot", "/tmp/image.raw", compression="lz4")
    info["cfg"], info["blocks"] (offset -> checksum), info["checksum"], block_file(...)
"""

import gzip
import hashlib
import json
import os
import time

import lz4.frame

BLOCK_SIZE = 2 * 1024 * 1024
BASE = "backupstore"


def block_checksum(data):
    """Longhorn's util.GetChecksum: hex(SHA-512(data))[:64]."""
    return hashlib.sha512(data).hexdigest()[:64]


def cfg_path(root, name):
    return os.path.join(root, BASE, "backing-images", "backing-images", name,
                        "backing-image.cfg")


def block_file(root, checksum):
    return os.path.join(root, BASE, "backing-images", "blocks", checksum[0:2], checksum[2:4],
                        checksum + ".blk")


def backup_url(target, name):
    """EncodeBackupBackingImageURL: ?backingImage= or &backingImage=."""
    return "%s%sbackingImage=%s" % (target, "&" if "?" in target else "?", name)


def compress(data, method, lz4_content_size=False):
    if method == "lz4":
        return lz4.frame.compress(data, block_size=lz4.frame.BLOCKSIZE_MAX4MB,
                                  content_checksum=True, block_checksum=False,
                                  store_size=lz4_content_size)
    if method in ("gzip", ""):  # "" is the legacy method: gzip
        out = bytearray(gzip.compress(data, compresslevel=6, mtime=0))
        out[9] = 0xFF  # OS "unknown", as Go's compress/gzip writes it
        return bytes(out)
    if method == "none":
        return data
    raise ValueError("unknown compression %r" % method)


def data_blocks(path, size, all_blocks=False):
    """Offsets of the blocks a Longhorn backup of this file stores."""
    if all_blocks:
        return list(range(0, size, BLOCK_SIZE))
    offsets = set()
    fd = os.open(path, os.O_RDONLY)
    try:
        pos = 0
        while pos < size:
            try:
                data = os.lseek(fd, pos, os.SEEK_DATA)
            except OSError:  # ENXIO: no data past pos
                break
            if data >= size:
                break
            hole = min(os.lseek(fd, data, os.SEEK_HOLE), size)
            first = data // BLOCK_SIZE * BLOCK_SIZE
            for off in range(first, hole, BLOCK_SIZE):
                offsets.add(off)
            pos = hole
    finally:
        os.close(fd)
    return sorted(offsets)


def file_sha512(path):
    h = hashlib.sha512()
    with open(path, "rb") as f:
        while True:
            b = f.read(4 * 1024 * 1024)
            if not b:
                break
            h.update(b)
    return h.hexdigest()


def write_file_atomic(path, data):
    """fsops.Write: a tmp file beside it, then rename."""
    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    tmp = "%s.tmp.%d" % (path, time.time_ns())
    with open(tmp, "wb") as f:
        f.write(data)
    os.rename(tmp, path)


def write_backup(root, name, image, compression="lz4", checksum=None, all_blocks=False,
                 method_field=None, labels=None, processing_blocks="empty",
                 created="2024-01-01T00:00:00Z", completed="2024-01-01T00:01:00Z",
                 lz4_content_size=False):
    """Back up the file `image` as backing image `name` under the vfs root.

    compression: how blocks are stored ("lz4", "gzip", "none"); method_field:
    what the cfg's CompressionMethod says (default: the same; "" is legacy,
    read as gzip). checksum: the cfg's Checksum (default: the file's SHA-512).
    processing_blocks: "empty" ({"Blocks": {}}) or None (null). completed=""
    leaves the backup in progress. Returns {"cfg", "blocks": {offset:
    checksum}, "checksum", "url_path": cfg path}.
    """
    size = os.path.getsize(image)
    offsets = data_blocks(image, size, all_blocks)
    blocks = {}
    with open(image, "rb") as f:
        for off in offsets:
            f.seek(off)
            data = f.read(min(BLOCK_SIZE, size - off))
            c = block_checksum(data)
            blocks[off] = c
            path = block_file(root, c)
            if not os.path.exists(path):  # the pool is shared and content-addressed
                write_file_atomic(path, compress(data, compression, lz4_content_size))
    whole = file_sha512(image) if checksum is None else checksum
    cfg = {
        "Name": name,
        "Size": str(size),
        "BlockCount": str(len(offsets)),
        "Checksum": whole,
        "Labels": labels,
        "CompressionMethod": compression if method_field is None else method_field,
        "CreatedTime": created,
        "CompleteTime": completed,
        "Secret": "",
        "SecretNamespace": "",
        "ProcessingBlocks": {"Blocks": {}} if processing_blocks == "empty" else None,
    }
    if offsets:
        cfg["Blocks"] = [{"Offset": off, "BlockChecksum": blocks[off]} for off in offsets]
    write_file_atomic(cfg_path(root, name), json.dumps(cfg, separators=(",", ":")).encode())
    return {"cfg": cfg, "blocks": blocks, "checksum": whole, "cfg_path": cfg_path(root, name)}


def backup_files(root):
    """Every file under <root>/backupstore, as paths relative to root (to copy
    a vfs backup into another target, e.g. an S3 bucket)."""
    out = []
    for d, _, files in os.walk(os.path.join(root, BASE)):
        for f in files:
            out.append(os.path.relpath(os.path.join(d, f), root))
    return sorted(out)
