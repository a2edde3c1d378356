"""The `bundles:` part of the config: where the daemon writes export bundles, and the hooks."""

from __future__ import annotations

from pathlib import Path

from mirror.config.model import BundleSettings
from mirror.config.yaml_view import YamlView

BUNDLE_KEYS = ("outbox", "split_size", "sign_command", "verify_command")


def read_bundles(view: YamlView, base: Path, private: tuple[Path, ...]) -> BundleSettings:
    fields = view.mapping(BUNDLE_KEYS)
    outbox = None
    if "outbox" in fields:
        outbox = Path(fields["outbox"].string()).expanduser()
        outbox = (outbox if outbox.is_absolute() else base / outbox).absolute()
        for other in private:
            if outbox.is_relative_to(other) or other.is_relative_to(outbox):
                raise fields["outbox"].error(
                    f"outbox {outbox} overlaps {other}; bundles must be written outside the "
                    "published tree and the state directory"
                )
    split = fields["split_size"].size_bytes() if "split_size" in fields else None
    if split is not None and split < 1 << 20:
        raise fields["split_size"].error("must be at least 1MiB")
    return BundleSettings(
        outbox=outbox,
        split_size=split,
        sign_command=_command(fields.get("sign_command")),
        verify_command=_command(fields.get("verify_command")),
    )


def _command(view: YamlView | None) -> tuple[str, ...]:
    if view is None:
        return ()
    args = tuple(view.string_list())
    if not args:
        raise view.error("give the command as a list, e.g. [gpg, --verify, '{signature}']")
    return args
