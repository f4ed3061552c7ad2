use std::time::Instant;
use store::*;
#[tokio::main]
async fn main() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("b.db");
    let s = Store::open(path.to_str().unwrap()).await.unwrap();
    let g = s
        .insert_group(GroupRow {
            name: "g".into(),
            upstreams: "[]".into(),
            channel_type: "openai".into(),
            test_model: "x".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let keys: Vec<NewKey> = (0..1_000_000)
        .map(|i| NewKey {
            value: format!("sk-proj-{i:0>48}"),
            hash: format!("{i:0>64}"),
        })
        .collect();
    let t = Instant::now();
    s.insert_keys(g.id, keys).await.unwrap();
    println!("insert 1e6: {:?}", t.elapsed());
    let t = Instant::now();
    let all = s.all_keys().await.unwrap();
    println!("all_keys 1e6: {:?} ({})", t.elapsed(), all.len());
    let t = Instant::now();
    let (p, total) = s
        .list_keys(KeyQuery {
            group_id: g.id,
            page: 1000,
            page_size: 15,
            ..Default::default()
        })
        .await
        .unwrap();
    println!(
        "list_keys page 1000: {:?} ({} of {})",
        t.elapsed(),
        p.len(),
        total
    );
    let now = chrono::Utc::now();
    let logs: Vec<LogRow> = (0..1000)
        .map(|i| LogRow {
            id: format!("id-{i}"),
            timestamp: now,
            group_id: g.id,
            group_name: "g".into(),
            parent_group_id: 0,
            parent_group_name: String::new(),
            key_value: "v".into(),
            key_hash: format!("{:0>64}", i * 7),
            model: "m".into(),
            is_success: true,
            source_ip: "1.2.3.4".into(),
            status_code: 200,
            request_path: "/p".into(),
            duration_ms: 5,
            error_message: String::new(),
            user_agent: String::new(),
            request_type: "final".into(),
            upstream_addr: "u".into(),
            is_stream: false,
            request_body: String::new(),
        })
        .collect();
    let t = Instant::now();
    s.write_batch(FlushBatch {
        logs,
        key_states: (1..200)
            .map(|i| KeyStateUpdate {
                key_id: i,
                failure_count: 1,
                status: "active".into(),
            })
            .collect(),
    })
    .await
    .unwrap();
    println!("write_batch 1000: {:?}", t.elapsed());
}
