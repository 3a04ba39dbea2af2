fn main() { println!("xtask: fetch-models, test (being written)"); }
