//! Images from arbitrary bytes (`load_image_bytes`): header checks, EXIF, decoding.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    vidlm_fuzz::init();
    let opts = vidlm_fuzz::small_limits();
    if let Ok(f) = vidlm_video_io::load_image_bytes_with(data.to_vec(), &opts) {
        let s = f.data.shape();
        assert_eq!(s[0], 1);
        assert_eq!(s[3], 3);
        assert!((s[1] as u64) * (s[2] as u64) <= opts.limits.max_pixels);
    }
});
