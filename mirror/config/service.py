"""The daemon's part of the config: schedules, drop folders, metrics address, watch tuning."""

from __future__ import annotations

from pathlib import Path

import yaml

from mirror.config.model import DropFolder, Schedule, ServiceSettings
from mirror.config.yaml_view import YamlView
from mirror.core.watch_modes import WATCH_MODES, WatchMode

SCHEDULE_KEYS = ("cron", "interval_minutes", "jitter_s", "at_start")
WATCH_KEYS = ("settle_s", "debounce_s", "mode", "poll_interval_s")
DROP_FOLDER_KEYS = ("path", "mode", "poll_interval_s")
# tests poll many times a second; below this a large share would be listed without a pause
MIN_POLL_INTERVAL_S = 0.05
MAX_POLL_INTERVAL_S = 3600.0


def read_service(top: dict[str, YamlView]) -> ServiceSettings:
    settings = ServiceSettings()
    host, port = settings.metrics_host, settings.metrics_port
    if "metrics" in top:
        metrics = top["metrics"].mapping(("listen",))
        if "listen" in metrics:
            host, port = _listen_address(metrics["listen"])
    settle, debounce = settings.settle_s, settings.debounce_s
    mode, interval = settings.watch_mode, settings.poll_interval_s
    if "watch" in top:
        watch = top["watch"].mapping(WATCH_KEYS)
        settle = watch["settle_s"].number(0.0, 3600.0) if "settle_s" in watch else settle
        debounce = watch["debounce_s"].number(0.0, 3600.0) if "debounce_s" in watch else debounce
        mode = _watch_mode(watch["mode"]) if "mode" in watch else mode
        interval = (
            _poll_interval(watch["poll_interval_s"]) if "poll_interval_s" in watch else interval
        )
    recompress = (
        top["recompress_after_s"].number(0.0)
        if "recompress_after_s" in top
        else settings.recompress_after_s
    )
    return ServiceSettings(host, port, settle, debounce, recompress, mode, interval)


def _watch_mode(view: YamlView) -> WatchMode:
    text = view.scalar()
    if text not in WATCH_MODES:
        raise view.error(
            f"expected one of {', '.join(WATCH_MODES)}, got {text!r} (auto: events on local "
            "filesystems, polling on network and FUSE ones)"
        )
    return WatchMode(text)


def _poll_interval(view: YamlView) -> float:
    return view.number(MIN_POLL_INTERVAL_S, MAX_POLL_INTERVAL_S)


def _listen_address(view: YamlView) -> tuple[str, int]:
    text = view.string()
    host, sep, port_text = text.rpartition(":")
    if not sep or not host or not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise view.error(f"expected HOST:PORT such as 127.0.0.1:9184, got {text!r}")
    return host.strip("[]"), int(port_text)


def read_schedule(view: YamlView) -> Schedule:
    fields = view.mapping(SCHEDULE_KEYS)
    if ("cron" in fields) == ("interval_minutes" in fields):
        raise view.error("give exactly one of cron: '0 */6 * * *' or interval_minutes: 360")
    cron = None
    if "cron" in fields:
        cron = fields["cron"].string()
        from apscheduler.triggers.cron import CronTrigger

        try:
            CronTrigger.from_crontab(cron)
        except ValueError as exc:
            raise fields["cron"].error(f"invalid cron expression: {exc}") from None
    return Schedule(
        cron=cron,
        interval_minutes=(
            fields["interval_minutes"].number(0.01) if "interval_minutes" in fields else None
        ),
        jitter_s=fields["jitter_s"].number(0.0) if "jitter_s" in fields else 0.0,
        at_start=fields["at_start"].boolean() if "at_start" in fields else False,
    )


def read_drop_folders(
    view: YamlView, base: Path, service: ServiceSettings
) -> tuple[DropFolder, ...]:
    """Each item a path, or `{path, mode, poll_interval_s}` overriding the `watch:` values."""
    folders: list[DropFolder] = []
    for item in view.sequence():
        mode, interval = service.watch_mode, service.poll_interval_s
        where = item
        if isinstance(item.node, yaml.MappingNode):
            fields = item.mapping(DROP_FOLDER_KEYS)
            if "path" not in fields:
                raise item.error("missing 'path', e.g. {path: /srv/incoming, mode: poll}")
            where = fields["path"]
            mode = _watch_mode(fields["mode"]) if "mode" in fields else mode
            interval = (
                _poll_interval(fields["poll_interval_s"])
                if "poll_interval_s" in fields
                else interval
            )
        path = Path(where.string()).expanduser()
        path = (path if path.is_absolute() else base / path).resolve()
        if not path.is_dir():
            raise where.error(f"drop folder {path} does not exist or is not a directory")
        if any(folder.path == path for folder in folders):
            raise where.error(f"drop folder {path} is listed twice")
        folders.append(DropFolder(path, mode, interval))
    return tuple(folders)
