"""Which Docker image serves each kind, and whether it is here without pulling.

The official images stay the default for users; CI (no registry) exports
SESSIONSPEC_REDIS_IMAGE / SESSIONSPEC_POSTGRES_IMAGE pointing at the images that
.ci/build-images.sh builds locally. Nothing here ever pulls: a missing image is a
reason to try the next method, named in the ProvisionError.
"""

from __future__ import annotations

import os
from typing import Any

DEFAULT_IMAGES = {"redis": "redis:7-alpine", "postgres": "postgres:16-alpine"}
LOCAL_IMAGES = {"redis": "sessionspec/redis:7-local", "postgres": "sessionspec/postgres:15-local"}
IMAGE_ENV = {"redis": "SESSIONSPEC_REDIS_IMAGE", "postgres": "SESSIONSPEC_POSTGRES_IMAGE"}
BUILD_SCRIPT = ".ci/build-images.sh"


def image_for(kind: str) -> str:
    """The configured image for kind ("redis" or "postgres")."""
    return os.environ.get(IMAGE_ENV[kind]) or DEFAULT_IMAGES[kind]


def image_present(client: Any, image: str) -> bool:
    """True when the engine has image locally (never contacts a registry)."""
    import docker.errors

    try:
        client.images.get(image)
    except docker.errors.ImageNotFound:
        return False
    return True


def missing_image_reason(kind: str, image: str) -> str:
    """Why the image is not usable and how to get one, for the ProvisionError line."""
    if image.startswith("sessionspec/"):
        return f"image {image} not present locally; build it with {BUILD_SCRIPT} (in a sessionspec source checkout)"
    return f"image {image} not present locally (sessionspec never pulls: run `docker pull {image}` first)"
