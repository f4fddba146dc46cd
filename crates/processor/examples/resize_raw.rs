// temporary dev tool: resize_raw in.raw sh sw oh ow backend out.raw
use vidlm_processor::resize::*;
fn main() {
    let a: Vec<String> = std::env::args().collect();
    let src = std::fs::read(&a[1]).unwrap();
    let p = |i: usize| a[i].parse::<usize>().unwrap();
    let b: Backend = a[6].parse().unwrap();
    let f = if a.len() > 8 && a[8] == "bilinear" { Filter::Bilinear } else { Filter::Bicubic };
    let out = resize(&src, p(2), p(3), p(4), p(5), f, b);
    std::fs::write(&a[7], out).unwrap();
}
