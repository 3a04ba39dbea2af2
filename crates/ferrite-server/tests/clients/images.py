"""DeepInfra's image generation example with the official `openai` Python client against ferrite
serving the tiny random FLUX pipeline (only base_url, the key and `size="256x256"` changed), for
n=1 and n=2, then the extensions through `extra_body` and a refused `response_format="url"`.
Each PNG is opened with PIL when the virtualenv has it (`cargo xtask clients` installs pillow);
otherwise its signature and IHDR chunk (size, 8-bit RGB, CRC) are checked here.
Prints `ok NAME` per check and `### done N checks` at the end; any failure raises.
"""

import base64
import io
import os
import struct
import tempfile
import zlib

import openai as openai_module
from openai import OpenAI

from client_checks import check, done


try:
    from PIL import Image
except ImportError:  # checked by hand below
    Image = None

client = OpenAI(
    api_key=os.environ.get("FERRITE_API_KEY", "none"),
    base_url=os.environ["FERRITE_BASE_URL"] + "/v1/openai",
    max_retries=0,
)
out_dir = tempfile.mkdtemp(prefix="ferrite-images-")


def png_size(data):
    """(width, height) from the PNG signature and IHDR chunk, checking its CRC and 8-bit RGB."""
    check("png signature", data[:8] == b"\x89PNG\r\n\x1a\n", data[:8])
    length, kind = struct.unpack(">I4s", data[8:16])
    check("png IHDR first", kind == b"IHDR" and length == 13, (length, kind))
    width, height, depth, color = struct.unpack(">IIBB", data[16:26])
    (crc,) = struct.unpack(">I", data[29:33])
    check("png IHDR crc", zlib.crc32(data[12:29]) == crc)
    check("png 8-bit RGB", (depth, color) == (8, 2), (depth, color))
    return width, height


def open_png(image_bytes, name):
    """The image's (width, height), through PIL when installed."""
    if Image is None:
        return png_size(image_bytes)
    image = Image.open(io.BytesIO(image_bytes))
    image.load()
    check(f"{name} is an RGB PNG", image.format == "PNG" and image.mode == "RGB", (image.format, image.mode))
    image.save(os.path.join(out_dir, f"{name}.png"))
    return image.size


for n in (1, 2):
    # DeepInfra's example, as written but for the size (and n).
    response = client.images.generate(
        prompt="A photo of an astronaut riding a horse on Mars.",
        size="256x256",
        quality="standard",
        n=n,
    )
    check(f"n={n} images", len(response.data) == n, response)
    for i, d in enumerate(response.data):
        b64_json = d.b64_json
        image_bytes = base64.b64decode(b64_json)
        size = open_png(image_bytes, f"output-{n}-{i}")
        check(f"n={n} image {i} is 256x256", size == (256, 256), size)
    check(f"n={n} created", response.created > 1_700_000_000, response.created)

response = client.images.generate(
    prompt="a red cube",
    size="64x32",
    response_format="b64_json",
    extra_body={"seed": 5, "num_inference_steps": 2},
)
size = open_png(base64.b64decode(response.data[0].b64_json), "extensions")
check("extensions: 64x32", size == (64, 32), size)

try:
    client.images.generate(prompt="a red cube", size="256x256", response_format="url")
    check("url refused", False, "no error")
except openai_module.BadRequestError as e:
    check("url refused", e.status_code == 400 and "b64_json" in str(e), e)
    check("url refused names the field", e.body.get("param") == "response_format", e.body)

print("PIL" if Image is not None else "no PIL: PNG headers checked by hand")
done()
