"""`/files/{app_id}/{expires}/{signature}/{key}`: signed, expiring downloads of stored files."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import FileResponse, PlainTextResponse, RedirectResponse, Response

from cdnrec.storage import Storages, grants
from cdnrec.store import Store
from cdnrec.store.cache import AppCache

MEDIA_TYPES = {
    ".mp4": "video/mp4",
    ".flv": "video/x-flv",
    ".m3u8": "application/vnd.apple.mpegurl",
    ".ts": "video/mp2t",
    ".aac": "audio/aac",
    ".mp3": "audio/mpeg",
}


def _owning_key(key: str) -> list[str]:
    keys = [key]
    if "/" in key and not key.endswith(".m3u8"):
        keys.append(key.rsplit("/", 1)[0] + ".m3u8")
    return keys


def files_endpoint(
    storages: Storages, store: Store, apps: AppCache, clock: Callable[[], float] = time.time
) -> Callable[[Request], Awaitable[Response]]:
    """The handler serving files whose URL signature is valid and unexpired."""

    async def serve(request: Request) -> Response:
        params = request.path_params
        app_id, expires, signature = params["app_id"], params["expires"], params["signature"]
        key = str(params["key"])
        if not (app_id.isdigit() and expires.isdigit()) or len(app_id) > 10:
            return PlainTextResponse("not found", status_code=404)
        if int(expires) < clock():
            return PlainTextResponse("this link has expired", status_code=403)
        app = await apps.get(int(app_id))
        if app is None or not grants(app.server_secret, int(app_id), int(expires), signature, key):
            return PlainTextResponse("invalid signature", status_code=403)
        owner = None
        for candidate in _owning_key(key):
            owner = await store.files.by_key(candidate)
            if owner is not None:
                break
        if owner is None or owner.app_id != int(app_id):
            return PlainTextResponse("not found", status_code=404)
        target = storages.get(owner.storage).direct_url(key)
        if target is not None:
            return RedirectResponse(target, status_code=302)
        path = storages.local.path_of(key)
        if path is None or not path.is_file():
            return PlainTextResponse("not found", status_code=404)
        return FileResponse(
            path, media_type=MEDIA_TYPES.get(path.suffix, "application/octet-stream")
        )

    return serve
