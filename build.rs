//! Compresses the page's script and style (gzip, best) into `OUT_DIR`, where
//! `src/http/page.rs` embeds them beside the plain files: a client that accepts gzip
//! gets them compressed at no cost per request.

use std::io::Write;
use std::path::Path;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let out = std::env::var("OUT_DIR")?;
    for name in ["app.js", "app.css"] {
        let source = Path::new("src/page").join(name);
        println!("cargo:rerun-if-changed={}", source.display());
        let bytes = std::fs::read(&source)?;
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        gz.write_all(&bytes)?;
        std::fs::write(Path::new(&out).join(format!("{name}.gz")), gz.finish()?)?;
    }
    Ok(())
}
