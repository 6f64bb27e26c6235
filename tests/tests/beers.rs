//! Contract tests of the beers service, on SQLite and PostgreSQL, through the generated
//! client: a public catalogue that only admins change, exact prices, and conditional
//! requests with ETags.

use serde_json::{json, Value};
use taproom_client::beers::{types, Client};
use taproom_tests::{on_both_databases, problem, Backend, Shop};
use uuid::Uuid;

fn new_beer(sku: &str, name: &str, price: &str) -> types::CreateBeer {
    types::CreateBeer {
        sku: sku.parse().unwrap(),
        name: name.parse().unwrap(),
        price: price.parse().unwrap(),
        style: None,
        image_url: None,
    }
}

async fn create(admin: &Client, sku: &str, name: &str, price: &str) -> types::Beer {
    admin
        .create_beer()
        .body(new_beer(sku, name, price))
        .send()
        .await
        .unwrap()
        .into_inner()
}

fn etag(headers: &reqwest::header::HeaderMap) -> String {
    headers["etag"].to_str().unwrap().to_string()
}

async fn the_catalogue_is_public_to_read_and_admin_only_to_change(backend: Backend) {
    let shop = Shop::start(backend).await;
    let admin = shop.beers_admin().await;
    let http = reqwest::Client::new();
    let resp = taproom_tests::bearer_client(&shop.users.admin_token().await)
        .post(format!("{}/v1/beers", shop.beers_url))
        .json(&json!({"sku": "IPA-330", "name": "Hoppy Days IPA", "price": "4.50", "style": "IPA", "image_url": "https://img.example.com/hd.png"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    let location = resp.headers()["location"].to_str().unwrap().to_string();
    let beer: types::Beer = resp.json().await.unwrap();
    assert_eq!(location, format!("/v1/beers/{}", beer.id));
    assert_eq!(
        (beer.sku.as_str(), beer.name.as_str(), beer.price.as_str()),
        ("IPA-330", "Hoppy Days IPA", "4.50")
    );
    assert_eq!(beer.style.as_deref(), Some("IPA"));
    assert_eq!(
        beer.image_url.as_deref(),
        Some("https://img.example.com/hd.png")
    );

    // Anyone reads, with no token at all.
    let got = shop.beers.get_beer().beer_id(beer.id).send().await.unwrap();
    assert_eq!(got.into_inner(), beer);
    let page = shop.beers.list_beers().send().await.unwrap().into_inner();
    assert_eq!(page.items, vec![beer.clone()]);

    // Changing the catalogue: 401 without a token, 403 for a customer.
    let (status, p) = problem(
        shop.beers
            .create_beer()
            .body(new_beer("X-1", "X", "1.00"))
            .send()
            .await,
    );
    assert_eq!(status, 401, "{p:?}");
    let (_, token) = shop.users.register("carol").await;
    let customer = Client::new_with_client(
        &shop.beers_url,
        taproom_tests::bearer_client(&token),
        Default::default(),
    );
    for result in [
        customer
            .create_beer()
            .body(new_beer("X-1", "X", "1.00"))
            .send()
            .await
            .map(|_| ()),
        customer
            .update_beer()
            .beer_id(beer.id)
            .body(types::UpdateBeer::default())
            .send()
            .await
            .map(|_| ()),
        customer
            .delete_beer()
            .beer_id(beer.id)
            .send()
            .await
            .map(|_| ()),
    ] {
        assert_eq!(problem(result).0, 403);
    }

    // A duplicate sku is 409, on create and on update.
    let (status, p) = problem(
        admin
            .create_beer()
            .body(new_beer("IPA-330", "Other", "1.00"))
            .send()
            .await,
    );
    assert_eq!(status, 409);
    assert!(p.detail.unwrap().contains("sku"));
    let stout = create(&admin, "STOUT-1", "Dark Night", "5.00").await;
    let (status, _) = problem(
        admin
            .update_beer()
            .beer_id(stout.id)
            .body(types::UpdateBeer {
                sku: Some("IPA-330".parse().unwrap()),
                ..Default::default()
            })
            .send()
            .await,
    );
    assert_eq!(status, 409);

    // Partial update: only what is sent changes; empty text removes optional fields.
    let changed = admin
        .update_beer()
        .beer_id(beer.id)
        .body(types::UpdateBeer {
            price: Some("4.75".parse().unwrap()),
            image_url: Some("".parse().unwrap()),
            ..Default::default()
        })
        .send()
        .await
        .unwrap()
        .into_inner();
    assert_eq!(changed.price, "4.75");
    assert_eq!(
        (changed.name.as_str(), changed.style.as_deref()),
        ("Hoppy Days IPA", Some("IPA"))
    );
    assert_eq!(changed.image_url, None);
    assert!(changed.updated_at > beer.updated_at);

    admin.delete_beer().beer_id(beer.id).send().await.unwrap();
    assert_eq!(
        problem(shop.beers.get_beer().beer_id(beer.id).send().await).0,
        404
    );
    assert_eq!(
        problem(admin.delete_beer().beer_id(beer.id).send().await).0,
        404
    );
    let missing = Uuid::now_v7();
    assert_eq!(
        problem(
            admin
                .update_beer()
                .beer_id(missing)
                .body(types::UpdateBeer::default())
                .send()
                .await
        )
        .0,
        404
    );
    let resp = http
        .get(format!("{}/v1/beers/not-a-uuid", shop.beers_url))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
}

async fn prices_are_two_place_decimals_and_nothing_else(backend: Backend) {
    let shop = Shop::start(backend).await;
    let token = shop.users.admin_token().await;
    let http = taproom_tests::bearer_client(&token);
    for (i, bad) in [
        json!("4.5"),
        json!("4.505"),
        json!("-1"),
        json!("-1.00"),
        json!("1e3"),
        json!("0.00"),
        json!("1000000.00"),
        json!("04.50"),
        json!(" 4.50"),
        json!(4.5),
        json!(null),
    ]
    .into_iter()
    .enumerate()
    {
        let resp = http
            .post(format!("{}/v1/beers", shop.beers_url))
            .json(&json!({"sku": format!("BAD-{i}"), "name": "Bad", "price": bad}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 400, "price {bad}");
        assert_eq!(resp.headers()["content-type"], "application/problem+json");
        let body: Value = resp.json().await.unwrap();
        assert_eq!(
            body["errors"][0]["pointer"], "/price",
            "price {bad}: {body}"
        );
    }
    let admin = shop.beers_admin().await;
    let page = shop.beers.list_beers().send().await.unwrap().into_inner();
    assert!(page.items.is_empty(), "no bad price was stored");
    for (i, good) in ["0.01", "0.10", "999999.99", "12.00"].iter().enumerate() {
        let beer = create(&admin, &format!("OK-{i}"), "Fine", good).await;
        assert_eq!(&beer.price, good);
        let again = shop.beers.get_beer().beer_id(beer.id).send().await.unwrap();
        assert_eq!(&again.price, good);
    }
    // Other bad input, all 400 with every violation named.
    let resp = http
        .post(format!("{}/v1/beers", shop.beers_url))
        .json(&json!({"sku": "lower-case", "name": "", "price": "1.00", "image_url": "ftp://x/y", "colour": "red"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let body: Value = resp.json().await.unwrap();
    let mut pointers: Vec<&str> = body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["pointer"].as_str().unwrap())
        .collect();
    pointers.sort();
    pointers.dedup();
    assert_eq!(
        pointers,
        ["/colour", "/image_url", "/name", "/sku"],
        "{body}"
    );
}

async fn reads_carry_etags_and_writes_honour_if_match(backend: Backend) {
    let shop = Shop::start(backend).await;
    let admin = shop.beers_admin().await;
    let token = shop.users.admin_token().await;
    let admin_http = taproom_tests::bearer_client(&token);
    let http = reqwest::Client::new();
    let beer = create(&admin, "PILS-1", "Crisp Pils", "3.20").await;
    let url = format!("{}/v1/beers/{}", shop.beers_url, beer.id);

    let first = http.get(&url).send().await.unwrap();
    assert_eq!(first.status(), 200);
    let tag = etag(first.headers());
    assert!(
        tag.starts_with('"') && tag.ends_with('"'),
        "a strong ETag: {tag}"
    );
    assert_eq!(
        etag(http.get(&url).send().await.unwrap().headers()),
        tag,
        "stable"
    );

    // If-None-Match with the current tag: 304, no body, same ETag.
    for wanted in [
        tag.clone(),
        format!("\"other\", {tag}"),
        "*".to_string(),
        format!("W/{tag}"),
    ] {
        let resp = http
            .get(&url)
            .header("if-none-match", &wanted)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 304, "If-None-Match: {wanted}");
        assert_eq!(etag(resp.headers()), tag);
        assert!(resp.headers().contains_key("x-request-id"));
        assert!(resp.bytes().await.unwrap().is_empty());
    }
    let resp = http
        .get(&url)
        .header("if-none-match", "\"stale\"")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);

    // The generated client sends If-None-Match too; 304 is not an error it decodes.
    let result = shop
        .beers
        .get_beer()
        .beer_id(beer.id)
        .if_none_match(tag.clone())
        .send()
        .await;
    match result {
        Err(taproom_client::beers::Error::UnexpectedResponse(r)) => assert_eq!(r.status(), 304),
        other => panic!("expected 304, got {other:?}"),
    }

    // Lists are tagged too, and the tag follows their content.
    let list_url = format!("{}/v1/beers", shop.beers_url);
    let list_tag = etag(http.get(&list_url).send().await.unwrap().headers());
    let resp = http
        .get(&list_url)
        .header("if-none-match", &list_tag)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 304);

    // A stale If-Match: 412, nothing changed.
    let resp = admin_http
        .patch(&url)
        .header("if-match", "\"not-the-tag\"")
        .json(&json!({"price": "9.99"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 412);
    assert_eq!(resp.headers()["content-type"], "application/problem+json");
    assert_eq!(
        shop.beers
            .get_beer()
            .beer_id(beer.id)
            .send()
            .await
            .unwrap()
            .price,
        "3.20"
    );
    // A weak tag never satisfies If-Match.
    let resp = admin_http
        .patch(&url)
        .header("if-match", format!("W/{tag}"))
        .json(&json!({"price": "9.99"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 412);

    // The current tag: applied, with a new tag; the old one now fails.
    let changed = admin
        .update_beer()
        .beer_id(beer.id)
        .if_match(tag.clone())
        .body(types::UpdateBeer {
            price: Some("3.40".parse().unwrap()),
            ..Default::default()
        })
        .send()
        .await
        .unwrap();
    let new_tag = etag(changed.headers());
    assert_ne!(new_tag, tag);
    assert_eq!(changed.into_inner().price, "3.40");
    let resp = http
        .get(&url)
        .header("if-none-match", &tag)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "the old tag no longer matches");
    assert_eq!(etag(resp.headers()), new_tag);
    assert_ne!(
        etag(http.get(&list_url).send().await.unwrap().headers()),
        list_tag
    );

    // Two writers with the same tag: exactly one wins.
    let writes = (0..4).map(|i| {
        let admin_http = admin_http.clone();
        let url = url.clone();
        let new_tag = new_tag.clone();
        async move {
            admin_http
                .patch(&url)
                .header("if-match", new_tag)
                .json(&json!({"name": format!("Writer {i}")}))
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    });
    let mut statuses = futures::future::join_all(writes).await;
    statuses.sort();
    assert_eq!(statuses, [200, 412, 412, 412]);

    // Delete honours If-Match the same way.
    let resp = admin_http
        .delete(&url)
        .header("if-match", &new_tag)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 412);
    let current = etag(http.get(&url).send().await.unwrap().headers());
    let resp = admin_http
        .delete(&url)
        .header("if-match", &current)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 204);
    let resp = admin_http
        .delete(&url)
        .header("if-match", &current)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    // Over-long conditional headers are refused like any bad parameter.
    let resp = http
        .get(&url)
        .header("if-none-match", "x".repeat(2000))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["errors"][0]["pointer"], "/header/If-None-Match");
}

async fn browsing_pages_and_filters_by_name(backend: Backend) {
    let shop = Shop::start(backend).await;
    let admin = shop.beers_admin().await;
    let mut made = Vec::new();
    for (i, name) in [
        "Hazy IPA",
        "West Coast IPA",
        "Dry Stout",
        "100% Rye",
        "Session ipa",
    ]
    .iter()
    .enumerate()
    {
        made.push(create(&admin, &format!("B-{i}"), name, "2.00").await);
    }
    let mut seen = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let mut req = shop
            .beers
            .list_beers()
            .limit(std::num::NonZeroU32::new(2).unwrap());
        if let Some(t) = &token {
            req = req.page_token(t.clone());
        }
        let page = req.send().await.unwrap().into_inner();
        assert!(page.items.len() <= 2);
        seen.extend(page.items.into_iter().map(|b| b.id));
        match page.next_page_token {
            Some(t) => token = Some(t),
            None => break,
        }
    }
    assert_eq!(
        seen,
        made.iter().map(|b| b.id).collect::<Vec<_>>(),
        "every beer once, oldest first"
    );
    let names = |page: types::BeerPage| page.items.into_iter().map(|b| b.name).collect::<Vec<_>>();
    let ipa = shop
        .beers
        .list_beers()
        .q("IPA")
        .send()
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        names(ipa),
        ["Hazy IPA", "West Coast IPA", "Session ipa"],
        "ignoring case"
    );
    // LIKE wildcards in q are plain characters.
    let pct = shop
        .beers
        .list_beers()
        .q("%")
        .send()
        .await
        .unwrap()
        .into_inner();
    assert_eq!(names(pct), ["100% Rye"]);
    let underscore = shop
        .beers
        .list_beers()
        .q("_")
        .send()
        .await
        .unwrap()
        .into_inner();
    assert!(underscore.items.is_empty());
}

on_both_databases!(
    the_catalogue_is_public_to_read_and_admin_only_to_change,
    prices_are_two_place_decimals_and_nothing_else,
    reads_carry_etags_and_writes_honour_if_match,
    browsing_pages_and_filters_by_name,
);
