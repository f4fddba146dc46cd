//! Times the resize kernels alone on a 1080p frame (a quick profiling aid).
use std::time::Instant;
use vidlm_processor::resize::{resize, resize_crop, Backend, Filter, Window};
fn main() {
    let (h, w) = (1080usize, 1920usize);
    let src: Vec<u8> = (0..h * w * 3).map(|i| ((i * 2654435761usize) >> 11) as u8).collect();
    for (name, oh, ow, win) in [
        ("384x384 squash", 384, 384, None),
        (
            "shortest 336 + crop",
            336,
            597,
            Some(Window { top: 0, left: 130, height: 336, width: 336 }),
        ),
        (
            "shortest 224 + crop",
            224,
            398,
            Some(Window { top: 0, left: 87, height: 224, width: 224 }),
        ),
    ] {
        for b in [Backend::Torchvision, Backend::Pil] {
            let t0 = Instant::now();
            let n = 10;
            for _ in 0..n {
                let out = match win {
                    None => resize(&src, h, w, oh, ow, Filter::Bicubic, b),
                    Some(win) => resize_crop(&src, h, w, oh, ow, win, Filter::Bicubic, b),
                };
                std::hint::black_box(out);
            }
            println!(
                "{name:24} {b:?}: {:.2} ms/frame",
                t0.elapsed().as_secs_f64() * 1000.0 / n as f64
            );
        }
    }
}
