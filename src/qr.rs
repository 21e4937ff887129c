//! Interim QR renderer (replaced by the fast-mask version).
use qrcodegen::{QrCode, QrCodeEcc, QrSegment, Version};

#[derive(Debug)]
pub struct QrError(&'static str);
impl std::fmt::Display for QrError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}

pub fn otpauth_png(text: &str) -> Result<Vec<u8>, QrError> {
    let segs = [QrSegment::make_bytes(text.as_bytes())];
    let qr = QrCode::encode_segments_advanced(
        &segs,
        QrCodeEcc::Medium,
        Version::MIN,
        Version::MAX,
        None,
        true,
    )
    .map_err(|_| QrError("too long"))?;
    let size = qr.size() as u32;
    let scale = 300 / (size + 8);
    let margin = (300 - scale * size) / 2;
    let mut raw = vec![0xffu8; 38 * 300];
    for y in 0..300u32 {
        for x in 0..300u32 {
            if x >= margin && y >= margin && x < margin + scale * size && y < margin + scale * size
            {
                let (mx, my) = ((x - margin) / scale, (y - margin) / scale);
                if qr.get_module(mx as i32, my as i32) {
                    raw[(y * 38 + x / 8) as usize] &= !(0x80 >> (x % 8));
                }
            }
        }
    }
    let mut out = Vec::new();
    let mut enc = png::Encoder::new(&mut out, 300, 300);
    enc.set_color(png::ColorType::Grayscale);
    enc.set_depth(png::BitDepth::One);
    let mut w = enc.write_header().map_err(|_| QrError("png"))?;
    w.write_image_data(&raw).map_err(|_| QrError("png"))?;
    w.finish().map_err(|_| QrError("png"))?;
    Ok(out)
}
