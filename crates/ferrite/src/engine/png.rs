//! 8-bit RGB images as PNG files (the `png` crate: a small, pure-Rust encoder, so the facade
//! needs no system image library).

use ferrite_models::diffusion::Image;

use crate::Error;

/// `image` as a PNG file: 8-bit RGB, no interlacing, default compression.
pub(crate) fn encode(image: &Image) -> Result<Vec<u8>, Error> {
    let (w, h) = (image.width, image.height);
    if image.rgb.len() != w * h * 3 {
        return Err(Error::Internal(format!("an image of {w}x{h} pixels came with {} bytes", image.rgb.len())));
    }
    let dims = |v: usize| u32::try_from(v).map_err(|_| Error::Internal(format!("image dimension {v} is too large")));
    let png = |e: png::EncodingError| Error::Internal(format!("encoding a PNG: {e}"));
    let mut out = Vec::with_capacity(image.rgb.len() / 2 + 64);
    let mut encoder = png::Encoder::new(&mut out, dims(w)?, dims(h)?);
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    let mut writer = encoder.write_header().map_err(png)?;
    writer.write_image_data(&image.rgb).map_err(png)?;
    writer.finish().map_err(png)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A gradient survives the round trip through the `png` decoder, pixel for pixel.
    #[test]
    fn round_trips_through_the_decoder() {
        let (width, height) = (48, 32);
        let rgb: Vec<u8> = (0..width * height).flat_map(|i| [(i % 256) as u8, (i / width * 7) as u8, 200]).collect();
        let bytes = encode(&Image { width, height, rgb: rgb.clone() }).unwrap();
        assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");
        let mut reader = png::Decoder::new(std::io::Cursor::new(bytes)).read_info().unwrap();
        let mut buf = vec![0; reader.output_buffer_size().unwrap()];
        let info = reader.next_frame(&mut buf).unwrap();
        assert_eq!((info.width, info.height), (width as u32, height as u32));
        assert_eq!((info.color_type, info.bit_depth), (png::ColorType::Rgb, png::BitDepth::Eight));
        assert_eq!(&buf[..info.buffer_size()], &rgb[..]);
    }

    #[test]
    fn a_short_buffer_is_an_error() {
        let e = encode(&Image { width: 4, height: 4, rgb: vec![0; 10] }).unwrap_err();
        assert!(e.to_string().contains("4x4 pixels came with 10 bytes"), "{e}");
    }
}
