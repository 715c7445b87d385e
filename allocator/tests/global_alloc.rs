//! A Rust program with `PtAlloc` as its global allocator running a multi-threaded workload
//! built from std collections, strings and channels, checked for the right results.

#[global_allocator]
static GLOBAL: ptalloc::PtAlloc = ptalloc::PtAlloc;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{mpsc, Arc, Mutex};

/// Words a producer sends: deterministic, so the consumer's totals can be checked.
fn words(producer: u64, n: u64) -> impl Iterator<Item = String> {
    (0..n).map(move |i| {
        let len = 1 + ((producer * 31 + i * 17) % 40) as usize;
        let c = (b'a' + ((producer + i) % 26) as u8) as char;
        std::iter::repeat_n(c, len).collect::<String>()
    })
}

#[test]
fn channels_collections_and_strings_across_threads() {
    const PRODUCERS: u64 = 8;
    const PER: u64 = 20_000;
    let (tx, rx) = mpsc::channel::<(u64, String, Vec<u64>)>();
    let producers: Vec<_> = (0..PRODUCERS)
        .map(|p| {
            let tx = tx.clone();
            std::thread::spawn(move || {
                for (i, w) in words(p, PER).enumerate() {
                    // Vectors of varying size, some large enough to be mmapped.
                    let n = if i % 5000 == 0 { 40_000 } else { i % 64 };
                    let v: Vec<u64> = (0..n as u64).collect();
                    tx.send((p, w, v)).unwrap();
                }
            })
        })
        .collect();
    drop(tx);

    let mut by_word: HashMap<String, u64> = HashMap::new();
    let mut by_producer: BTreeMap<u64, (u64, u64)> = BTreeMap::new();
    let mut recent: VecDeque<String> = VecDeque::new();
    for (p, w, v) in rx {
        let sum: u64 = v.iter().sum();
        let e = by_producer.entry(p).or_default();
        e.0 += 1;
        e.1 += sum;
        *by_word.entry(w.clone()).or_default() += 1;
        recent.push_back(w);
        if recent.len() > 1000 {
            recent.pop_front();
        }
    }
    for t in producers {
        t.join().unwrap();
    }

    let mut expect_words: HashMap<String, u64> = HashMap::new();
    for p in 0..PRODUCERS {
        for w in words(p, PER) {
            *expect_words.entry(w).or_default() += 1;
        }
    }
    assert_eq!(by_word, expect_words);
    for p in 0..PRODUCERS {
        let expect_sum: u64 = (0..PER)
            .map(|i| {
                let n = if i % 5000 == 0 { 40_000 } else { i % 64 };
                n * n.saturating_sub(1) / 2
            })
            .sum();
        assert_eq!(by_producer[&p], (PER, expect_sum));
    }
    assert_eq!(recent.len(), 1000);
    ptalloc::linux().check_heap().unwrap();
}

#[test]
fn shared_state_aligned_types_and_growth() {
    #[repr(align(4096))]
    struct Page([u8; 4096]);
    #[repr(align(64))]
    #[derive(Clone, Copy)]
    struct Line(u64);

    let shared = Arc::new(Mutex::new(Vec::<Box<Page>>::new()));
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let shared = shared.clone();
            std::thread::spawn(move || {
                let mut lines: Vec<Line> = Vec::new();
                let mut text = String::new();
                for i in 0..50_000u64 {
                    lines.push(Line(i * t));
                    if i % 100 == 0 {
                        let page = Box::new(Page([t as u8; 4096]));
                        assert_eq!(&*page as *const Page as usize % 4096, 0);
                        shared.lock().unwrap().push(page);
                    }
                    text.push_str(&i.to_string());
                }
                assert_eq!(lines.as_ptr() as usize % 64, 0);
                assert!(lines.iter().enumerate().all(|(i, l)| l.0 == i as u64 * t));
                let zeros = vec![0u8; 300_000];
                assert!(zeros.iter().all(|&b| b == 0));
                text.len()
            })
        })
        .collect();
    let lens: Vec<usize> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    let expect: usize = (0..50_000u64).map(|i| i.to_string().len()).sum();
    assert!(lens.iter().all(|&l| l == expect));
    let pages = shared.lock().unwrap();
    assert_eq!(pages.len(), 4 * 500);
    for p in pages.iter() {
        assert!(p.0.iter().all(|&b| b == p.0[0]));
    }
    drop(pages);
    let stats = ptalloc::linux().stats();
    assert!(stats.brk_calls > 0, "the program's memory came from ptalloc's brk heap");
    assert!(stats.mmap_calls > 0, "large vectors were mmapped");
    ptalloc::linux().check_heap().unwrap();
}
