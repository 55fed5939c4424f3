"""The model store: every version's arrays and metadata, under a local path or a filesystem URI.

Layout: ``<root>/<version id>/model.npz`` and ``<root>/<version id>/info.json``. The root is a
path or any URI pyarrow's filesystems take (``file://``, ``hdfs://``, ``s3://``, ...), so a
cluster's retrain job and the workers can share it. ``info.json`` is written last: a version
without it is incomplete and never listed. A large catalog's top-k index (``velox.model.index``)
is ``<root>/<version id>/index.faiss``, saved beside the version so an edge loads it instead of
building it again.
"""

from __future__ import annotations

import uuid

from pyarrow import fs

from velox.errors import UnknownVersion
from velox.model.index import ItemIndex
from velox.model.version import ModelVersion
from velox.schemas import model_version
from velox.schemas.model_version import VersionInfo


def filesystem(root: str) -> tuple[fs.FileSystem, str]:
    """The filesystem and path of a local path or a URI."""
    return fs.FileSystem.from_uri(root) if "://" in root else (fs.LocalFileSystem(), root)


class ModelStore:
    def __init__(self, root: str) -> None:
        self.root = root
        self.fs, self.path = filesystem(root)

    def save(self, version: ModelVersion, info: VersionInfo, index: ItemIndex | None = None) -> None:
        folder = f"{self.path}/{info.id}"
        self.fs.create_dir(folder, recursive=True)
        self._write(f"{folder}/model.npz", version.to_npz())
        if index is not None:
            self._write(f"{folder}/index.faiss", index.to_bytes())
        self._write(f"{folder}/info.json", model_version.encode(info))

    def list(self) -> list[VersionInfo]:
        """Every complete version, oldest first."""
        selector = fs.FileSelector(self.path, allow_not_found=True)
        folders = [entry.path for entry in self.fs.get_file_info(selector) if entry.type == fs.FileType.Directory]
        infos = [self.fs.get_file_info(f"{folder}/info.json") for folder in folders]
        found = [model_version.decode_info(self._read(entry.path)) for entry in infos if entry.type == fs.FileType.File]
        return sorted(found, key=lambda info: info.created_at)

    def info(self, version_id: str) -> VersionInfo:
        return model_version.decode_info(self._read(f"{self.path}/{version_id}/info.json", version_id))

    def load(self, version_id: str) -> ModelVersion:
        """The version's arrays read one at a time from the file (not the whole file into memory
        first: that held each array twice, a peak of twice the version's size)."""
        self.info(version_id)  # refuses an incomplete version
        try:
            with self.fs.open_input_file(f"{self.path}/{version_id}/model.npz") as source:
                return ModelVersion.from_npz(source)
        except FileNotFoundError:
            raise UnknownVersion(f"no complete version {version_id!r} in the model store {self.root}") from None

    def load_index(self, version: ModelVersion, breadth: int) -> ItemIndex | None:
        """The top-k index saved beside ``version``, or None if none was."""
        path = f"{self.path}/{version.id}/index.faiss"
        if self.fs.get_file_info(path).type != fs.FileType.File:
            return None
        return ItemIndex.from_bytes(self._read(path, version.id), version, breadth)

    def save_index(self, version_id: str, index: ItemIndex) -> None:
        """Add an index beside a saved version: written aside, then moved, so a reader never sees half."""
        path = f"{self.path}/{version_id}/index.faiss"
        aside = f"{path}.{uuid.uuid4().hex[:8]}"
        self._write(aside, index.to_bytes())
        self.fs.move(aside, path)

    def _write(self, path: str, data: bytes) -> None:
        with self.fs.open_output_stream(path) as out:
            out.write(data)

    def _read(self, path: str, version_id: str = "") -> bytes:
        try:
            with self.fs.open_input_stream(path) as source:
                return source.read()
        except FileNotFoundError:
            raise UnknownVersion(f"no complete version {version_id!r} in the model store {self.root}") from None
