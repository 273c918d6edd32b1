"""Which runtime runs a capsule's trials here, and in which image.

The request comes from `--runtime`, else $CAPSULE_RUNTIME, else the spec's `runtime.kind`.
`docker` insists: no engine, or no image with the locked id, is an error saying how to get one.
`auto` takes docker when an engine answers and the image is there, else falls back to local
with a warning, because a result from the host's environment may differ from the image's.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from typing import Any, Literal

from capsule.capsulefile import Capsule
from capsule.errors import CapsuleError, CapsuleWarning
from capsule.spec import Spec

KINDS = ("auto", "docker", "local")


@dataclass(frozen=True)
class Choice:
    kind: Literal["docker", "local"]
    image: str | None = None  # the image id to run (docker)
    engine: Any = None
    warning: str | None = None


def requested(spec: Spec, runtime: str | None) -> str:
    kind = runtime or os.environ.get("CAPSULE_RUNTIME") or spec.runtime.kind
    if kind not in KINDS:
        raise CapsuleError(f"runtime {kind!r} is not one of {', '.join(KINDS)}")
    return kind


def image_ref(capsule: Capsule) -> str:
    """The image a capsule's trials run in: the locked id, else the spec's, else the default."""
    from capsule import image

    locked = capsule.environment.image
    if locked is not None:
        return locked.id
    return capsule.spec.runtime.image or image.trial_tag(torch=capsule.spec.model.is_torch())


def missing_image_hint(capsule: Capsule, ref: str) -> str:
    locked = capsule.environment.image
    build = "capsule image build" + (" --torch" if capsule.spec.model.is_torch() else "")
    if locked is None:
        return f"image {ref} is not on this Docker engine; build it with `{build}`"
    return (
        f"the capsule's locked image {locked.id} ({locked.tag}) is not on this Docker engine; "
        f"load its archive with `capsule image load FILE`, or build it with `{build}` from "
        f"the capsule source that packed it ({capsule.tool})"
    )


def choose(
    capsule: Capsule, runtime: str | None = None, image_override: str | None = None
) -> Choice:
    from capsule import image

    kind = requested(capsule.spec, runtime)
    ref = image_override or image_ref(capsule)
    locked = capsule.environment.image
    if kind == "local":
        warning = None
        if locked is not None:
            warning = (
                f"running on this host's environment, not the capsule's locked image "
                f"{locked.id[:19]}; results may differ from the recorded ones"
            )
        return Choice("local", warning=warning)
    fallback = "; running trials on this host, unconfined"
    try:
        engine = image.client()
    except image.ImageError as exc:
        if kind == "docker":
            raise
        return Choice("local", warning=f"{exc}{fallback}")
    try:
        found = image.info(engine, ref)
    except image.ImageError:
        message = missing_image_hint(capsule, ref)
        if kind == "docker":
            raise image.ImageError(message) from None
        return Choice("local", warning=message + fallback)
    if locked is not None and image_override and found.id != locked.id:
        raise image.ImageError(
            f"image {image_override} is {found.id}, but the capsule locks {locked.id}"
        )
    warning = None
    if locked is None and not image_override:
        # A tag is whatever this engine last gave that name: say which image it is, since
        # nothing in the capsule can confirm it (the id goes into every trial's record).
        warning = (
            f"the capsule locks no image id: its trials run in {ref}, here {found.id[:19]}; "
            "`capsule pack --runtime docker` locks one"
        )
    return Choice("docker", image=found.id, engine=engine, warning=warning)


def runtime_choice(
    capsule: Capsule, runtime: str | None = None, image_ref: str | None = None
) -> Choice:
    """Where this capsule's trials run here; a fallback to local is a CapsuleWarning."""
    choice = choose(capsule, runtime, image_ref)
    if choice.warning:
        warnings.warn(CapsuleWarning(choice.warning), stacklevel=3)
    return choice
