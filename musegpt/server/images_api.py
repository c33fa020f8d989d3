"""Pictures over HTTP: `POST /v1/images/generations` in OpenAI's shape (and the older shape of
the 2021 API: `num_images`, model `image-alpha-001`), the PNGs it made at
`/v1/images/files/{id}.png`, and saving one into a project of the works library.

Every picture is a PNG in the server's data folder (`images/{id}.png`, its caption, seed and
model also written into the PNG's text chunks) with a sidecar `{id}.json` of its provenance;
with a works library, each is also a generation there (task `image`, the prompt, the model,
the parameters and seed, and its URL as the output).
"""

from __future__ import annotations

import base64
import io
import json
import re
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

from fastapi import APIRouter, File, Form, Request, UploadFile
from fastapi.responses import FileResponse
from PIL.PngImagePlugin import PngInfo
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from musegpt.fileio import atomic_write, atomic_write_text
from musegpt.generation.params import SamplingParams
from musegpt.server.errors import APIError, from_validation, invalid
from musegpt.server.hosts import in_thread
from musegpt.server.moderation_api import screen_prompt
from musegpt.server.state import ServerState, state_of
from musegpt.server.works_api import check_provenance_target, run_on_store

if TYPE_CHECKING:
    from PIL import Image

    from musegpt.images import ImageModel

router = APIRouter(prefix="/v1/images")

# The 2021 API's only engine; like the 0.x engines path for text, it means the default.
ALIASES = {"image-alpha-001": "default"}
OPENAI_STYLES = {"vivid", "natural"}  # DALL-E 3's styles: here, "any of the model's styles"
IMAGE_ID = re.compile(r"[0-9a-f]{32}")
MAX_PROMPT_CHARS = 1000
SIZES_TEXT = "256x256, 512x512 or 1024x1024"
MAX_UPLOAD_BYTES = 4 * 2**20  # OpenAI's limit for a picture to vary
MAX_UPLOAD_PIXELS = 4096 * 4096
# A request's parameters that, named in a drawing error, are the ones to blame.
PARAMS = ("prompt", "size", "style", "temperature", "top_k", "guidance", "n", "keep", "expand")


class ImageRequest(BaseModel):
    """OpenAI's image generation request, plus MuseGPT's own drawing controls."""

    model_config = ConfigDict(extra="forbid")

    prompt: str = Field(..., min_length=1, max_length=MAX_PROMPT_CHARS)
    model: str | None = Field(None, description="an image model; default: icons")
    n: int | None = Field(None, ge=1, description="pictures to draw (at most 10)")
    num_images: int | None = Field(None, ge=1, description="the 2021 API's name for n")
    size: str = Field("1024x1024", description=SIZES_TEXT)
    response_format: Literal["url", "b64_json"] = "url"
    user: str | None = Field(None, max_length=256)
    quality: str | None = Field(None, max_length=32, description="accepted; one quality here")
    style: str | None = Field(None, max_length=64, description="e.g. flat, outline, color, line")
    seed: int | None = Field(None, ge=0, le=2**31 - 1, description="same seed, same pictures")
    temperature: float | None = Field(None, ge=0.0, le=2.0, description="default: the model's")
    top_k: int | None = Field(None, ge=1, description="default: the model's")
    guidance: float | None = Field(
        None, gt=0.0, le=20.0, description="classifier-free guidance; default: the model's"
    )
    project_id: int | None = Field(None, ge=1, le=2**62, description="keep provenance here")
    expand: bool | None = Field(
        None, description="map the prompt to the model's trained names; default: the model's"
    )


class SaveRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    project_id: int = Field(..., ge=1, le=2**62)
    title: str | None = Field(None, min_length=1, max_length=200)


class ImageModels:
    """The image models this server draws with, loaded on first use; tests hand in theirs."""

    def __init__(self, preloaded: dict[str, ImageModel] | None = None) -> None:
        from musegpt.images import DEFAULT_IMAGE_MODEL

        self.models: dict[str, ImageModel] = dict(preloaded or {})
        self.default = next(iter(self.models), DEFAULT_IMAGE_MODEL)
        self.failed: dict[str, str] = {}
        self._lock = threading.Lock()

    def resolve(self, name: str | None) -> str:
        name = ALIASES.get(name or "default", name or "default")
        return self.default if name == "default" else name

    def get(self, name: str | None) -> ImageModel:
        """The model, loading it if needed; a 404 naming `model` when there is none."""
        from musegpt.images import ImageModelError, load_image_model

        wanted = self.resolve(name)
        with self._lock:
            if wanted in self.models:
                return self.models[wanted]
            if wanted in self.failed or _looks_like_path(wanted):
                raise self._missing(name, self.failed.get(wanted, "not a model name"))
            try:
                model = load_image_model(wanted)
            except (ImageModelError, OSError) as err:
                self.failed[wanted] = str(err)
                raise self._missing(name, str(err)) from None
            self.models[wanted] = model
            return model

    def _missing(self, name: str | None, why: str) -> APIError:
        aliases = ", ".join(ALIASES)
        return APIError(
            404,
            f"the image model {name!r} is not available ({why}); this server draws with "
            f"{self.default!r} (also called {aliases}) and registered image models",
            "model",
            "model_not_found",
        )


def _looks_like_path(name: str) -> bool:
    """Clients name models; they do not point the server at files."""
    return any(sep in name for sep in ("/", "\\")) or name.startswith((".", "~"))


def serve_image_models(app: Any, models: dict[str, ImageModel]) -> None:
    """Draw with `models` (name -> model; the first is the default) instead of loading the
    packaged one on first use."""
    app.state.musegpt_images = ImageModels(models)


def image_models(request: Request) -> ImageModels:
    state = request.app.state
    if not hasattr(state, "musegpt_images"):
        state.musegpt_images = ImageModels()
    models: ImageModels = state.musegpt_images
    return models


def image_folder(state: ServerState) -> Path:
    return state.settings.data_dir / "images"


def _check_size(size: str) -> int:
    from musegpt.images import IMAGE_SIZES

    if size not in IMAGE_SIZES:
        raise invalid(f"size {size!r} is not supported; use {SIZES_TEXT}", "size")
    return int(size.partition("x")[0])


def _count(body: ImageRequest) -> int:
    from musegpt.images import MAX_IMAGES

    if body.n is not None and body.num_images is not None and body.n != body.num_images:
        raise invalid("give n or num_images (the older name), not both", "n")
    n = body.n or body.num_images or 1
    if n > MAX_IMAGES:
        param = "n" if body.n is not None else "num_images"
        raise invalid(f"{param} must be at most {MAX_IMAGES} pictures per request", param)
    return n


def _style(body: ImageRequest) -> str | None:
    if body.style is None or body.style.lower() in OPENAI_STYLES:
        return None
    return body.style


def _png(picture: Image.Image, provenance: dict[str, Any]) -> bytes:
    """The PNG, its provenance in text chunks (read back by any PNG tool)."""
    chunks = PngInfo()
    for key in ("prompt", "model", "seed", "style"):
        chunks.add_text(key, str(provenance.get(key, "")))
    out = io.BytesIO()
    picture.save(out, "PNG", pnginfo=chunks)
    return out.getvalue()


@router.post("/generations")
async def generate_images(body: ImageRequest, request: Request) -> dict[str, Any]:
    state = state_of(request)
    size = _check_size(body.size)
    n = _count(body)
    screen_prompt(state, [body.prompt], SamplingParams())  # under --moderation block: 400
    if body.project_id is not None:  # a missing project is a 404 before any drawing
        check_provenance_target(request, body.project_id, None)
    deadline = time.monotonic() + state.settings.request_timeout_s
    models = image_models(request)
    model = await in_thread(lambda: models.get(body.model), threading.Event(), deadline)
    style = _style(body)

    def draw() -> list[Image.Image]:
        return model.draw(
            body.prompt,
            n=n,
            size=size,
            seed=body.seed,
            style=style,
            temperature=body.temperature,
            top_k=body.top_k,
            guidance=body.guidance,
            expand=body.expand,
        )

    return await _answer(request, state, body, model, draw, size, deadline)


async def _answer(
    request: Request,
    state: ServerState,
    body: ImageRequest,
    model: ImageModel,
    draw: Callable[[], list[Image.Image]],
    size: int,
    deadline: float,
) -> dict[str, Any]:
    """Run `draw` off the event loop, keep every picture, and answer in OpenAI's shape."""
    try:
        pictures = await in_thread(draw, threading.Event(), deadline)
    except ValueError as err:  # ImageRequestError: a style the model lacks, bad sampling
        message = str(err)
        param = next((p for p in PARAMS if re.search(rf"\b{p}\b", message)), None)
        raise invalid(message, param) from None
    created = int(time.time())
    base = str(request.base_url).rstrip("/")
    data = [
        _keep(request, state, body, model.name, picture, size, created, base)
        for picture in pictures
    ]
    return {"created": created, "data": data}


@router.post("/variations")
async def image_variations(
    request: Request,
    image: Annotated[UploadFile, File(description="the picture to vary: PNG, under 4 MB")],
    n: Annotated[int, Form(ge=1, description="variations to draw (at most 10)")] = 1,
    size: Annotated[str, Form(description=SIZES_TEXT)] = "1024x1024",
    response_format: Annotated[Literal["url", "b64_json"], Form()] = "url",
    model: Annotated[str | None, Form(description="an image model; default: icons")] = None,
    user: Annotated[str | None, Form(max_length=256)] = None,
    prompt: Annotated[
        str | None,
        Form(max_length=MAX_PROMPT_CHARS, description="MuseGPT: a caption for the redrawn part"),
    ] = None,
    keep: Annotated[
        float, Form(gt=0.0, lt=1.0, description="MuseGPT: the share of rows kept from the top")
    ] = 0.5,
    seed: Annotated[int | None, Form(ge=0, le=2**31 - 1)] = None,
    style: Annotated[str | None, Form(max_length=64)] = None,
    project_id: Annotated[int | None, Form(ge=1, le=2**62)] = None,
) -> dict[str, Any]:
    """Variations of an uploaded picture (OpenAI's `/v1/images/variations`): the top rows of
    its token grid are kept and the model redraws the rest."""
    state = state_of(request)
    caption = (prompt or "").strip()
    try:
        body = ImageRequest(
            prompt=caption or f"a variation of {image.filename or 'an uploaded picture'}"[:200],
            model=model, n=n, size=size, response_format=response_format, user=user,
            style=style, seed=seed, project_id=project_id,
        )  # fmt: skip
    except ValidationError as err:
        raise from_validation(err.errors()) from None
    pixels = _check_size(size)
    count = _count(body)
    if caption:
        screen_prompt(state, [caption], SamplingParams())
    if project_id is not None:
        check_provenance_target(request, project_id, None)
    picture = _read_upload(await image.read(MAX_UPLOAD_BYTES + 1))
    deadline = time.monotonic() + state.settings.request_timeout_s
    models = image_models(request)
    chosen = await in_thread(lambda: models.get(model), threading.Event(), deadline)

    def vary() -> list[Image.Image]:
        return chosen.vary(
            picture, n=count, size=pixels, seed=seed, keep=keep, prompt=caption,
            style=_style(body),
        )  # fmt: skip

    return await _answer(request, state, body, chosen, vary, pixels, deadline)


def _read_upload(data: bytes) -> Image.Image:
    """The uploaded picture, or a 400 naming `image`."""
    from PIL import Image, UnidentifiedImageError

    if len(data) > MAX_UPLOAD_BYTES:
        raise invalid(f"image must be under {MAX_UPLOAD_BYTES // 2**20} MB", "image")
    try:
        picture = Image.open(io.BytesIO(data))
        if picture.width * picture.height > MAX_UPLOAD_PIXELS:
            raise invalid(f"image must have at most {MAX_UPLOAD_PIXELS} pixels", "image")
        picture.load()
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError):
        raise invalid("image is not a picture this server can read; send a PNG", "image") from None
    return picture


def _keep(
    request: Request,
    state: ServerState,
    body: ImageRequest,
    model: str,
    picture: Image.Image,
    size: int,
    created: int,
    base: str,
) -> dict[str, Any]:
    """Write one picture and its provenance; its entry of the answer's `data`."""
    image_id = uuid.uuid4().hex
    path = f"/v1/images/files/{image_id}.png"
    provenance: dict[str, Any] = {
        "id": image_id,
        "prompt": body.prompt,
        "model": model,
        "seed": int(picture.info.get("seed", body.seed or 0)),
        "index": int(picture.info.get("index", 0)),
        "style": str(picture.info.get("style", "")),
        "size": f"{size}x{size}",
        **_sampling(picture, body),
        "user": body.user,
        "created": created,
        "project_id": body.project_id,
    }
    png = _png(picture, provenance)
    folder = image_folder(state)
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write(folder / f"{image_id}.png", lambda tmp: tmp.write_bytes(png))
    if state.store is not None:
        params = {k: provenance[k] for k in ("seed", "index", "style", "size", "temperature")}
        params.update(top_k=provenance["top_k"], guidance=provenance["guidance"])
        params.update(n=body.n or body.num_images or 1, user=body.user)
        params["image_id"] = image_id
        provenance["generation_id"] = run_on_store(
            request,
            lambda s: s.record_generation(
                "image", model, params, body.prompt, path, body.project_id
            ),
        )
    atomic_write_text(folder / f"{image_id}.json", json.dumps(provenance, ensure_ascii=False))
    entry: dict[str, Any] = {
        "revised_prompt": str(picture.info.get("caption", body.prompt)),  # after expansion
        "id": image_id,
        "seed": provenance["seed"],
        "style": provenance["style"],
        "generation_id": provenance.get("generation_id"),
    }
    if body.response_format == "b64_json":
        entry["b64_json"] = base64.b64encode(png).decode("ascii")
    else:
        entry["url"] = base + path
    return entry


def _sampling(picture: Image.Image, body: ImageRequest) -> dict[str, float | int | None]:
    """The temperature, top-k and guidance a picture was drawn with: the model's own
    defaults (in the picture's info) where the request left them out."""
    asked = {"temperature": body.temperature, "top_k": body.top_k, "guidance": body.guidance}
    used: dict[str, float | int | None] = {}
    for key, value in asked.items():
        recorded = picture.info.get(key)
        if value is None and recorded not in (None, "", "None"):
            value = int(float(recorded)) if key == "top_k" else float(recorded)
        used[key] = value
    return used


def _image_file(request: Request, image_id: str, suffix: str) -> Path:
    path = image_folder(state_of(request)) / f"{image_id}{suffix}"
    if not IMAGE_ID.fullmatch(image_id) or not path.is_file():
        raise APIError(404, f"no image {image_id!r} on this server", "id", "not_found")
    return path


@router.get("/files/{name}")
def image_file(name: str, request: Request) -> FileResponse:
    """A picture this server drew (`{id}.png`) or its provenance (`{id}.json`)."""
    stem, dot, suffix = name.rpartition(".")
    if not dot or suffix not in ("png", "json"):
        raise APIError(404, f"no file {name!r}: ask for ID.png or ID.json", "id", "not_found")
    path = _image_file(request, stem, f".{suffix}")
    media = "image/png" if suffix == "png" else "application/json"
    return FileResponse(path, media_type=media)


@router.post("/files/{image_id}/save")
def save_image(image_id: str, body: SaveRequest, request: Request) -> dict[str, Any]:
    """Keep a picture in a project: a document (kind `image`) whose text is the picture as
    Markdown, linked to the generation that drew it."""
    info = json.loads(_image_file(request, image_id, ".json").read_text(encoding="utf-8"))
    title = body.title or info["prompt"][:200]
    text = f"![{info['prompt']}](/v1/images/files/{image_id}.png)\n"
    generation_id = info.get("generation_id")
    document = run_on_store(
        request, lambda s: s.create_document(body.project_id, title, "image", "")
    )
    run_on_store(
        request,
        lambda s: s.save(document["id"], text, f"image {image_id}", generation_id),
    )
    return run_on_store(request, lambda s: s.document(document["id"]))


@router.get("/models")
async def list_image_models(request: Request) -> dict[str, Any]:
    """The default image model (loaded if needed) and any others loaded: names, styles."""
    models = image_models(request)
    deadline = time.monotonic() + state_of(request).settings.request_timeout_s
    await in_thread(lambda: models.get(None), threading.Event(), deadline)
    return {
        "default": models.default,
        "aliases": {alias: models.default for alias in ALIASES},
        "data": [
            {"id": name, "object": "model", "kind": "image", "styles": model.styles}
            for name, model in models.models.items()
        ],
    }
