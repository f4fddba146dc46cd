//! Video from arbitrary bytes: open (custom AVIO) + probe + sample a few frames, strict and
//! lenient, seeking and sequential.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vidlm_video_io::{SampleRequest, Strategy, VideoReader};

fuzz_target!(|data: &[u8]| {
    vidlm_fuzz::init();
    let opts = vidlm_fuzz::small_limits();
    let Ok(mut r) = VideoReader::from_bytes(data.to_vec(), &opts) else { return };
    let info = r.info().clone();
    assert!(info.width > 0 && info.height > 0);
    assert!((info.width as u64) * (info.height as u64) <= opts.limits.max_pixels);
    assert_eq!(r.frame_times().len(), info.frame_count);
    for req in [
        SampleRequest::num_frames(3).clamp(true),
        SampleRequest::num_frames(2).clamp(true).lenient(true).strategy(Strategy::Sequential),
        SampleRequest::indices(vec![info.frame_count.saturating_sub(1), 0]).lenient(true),
    ] {
        if let Ok(f) = r.sample(&req) {
            let shape = f.data.shape();
            assert_eq!(shape[0], f.indices.len());
            assert_eq!(
                (shape[1], shape[2], shape[3]),
                (info.output_height as usize, info.output_width as usize, 3)
            );
            assert_eq!(f.pts.len(), f.indices.len());
            assert!(f.indices.iter().all(|&i| i < info.frame_count));
            assert!(f.len() <= 3);
        }
    }
});
