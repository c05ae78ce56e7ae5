//! What the exchange does with what arrived: the catalogue and offers imported in the
//! background, bookings handed out to `query`, and 1C's documents from `sale file` applied.

use super::*;

/// What an import reads: the file itself, or the archives that may hold it.
enum Source {
    File(PathBuf),
    Archives(Vec<(String, PathBuf)>),
}

/// Import runs in the background: 1C repeats the request while we answer `progress`, so a big
/// catalogue never hits its HTTP timeout.
pub(super) fn import(ex: &Arc<Exchange>, cookie: String, filename: Option<&str>) -> Response {
    let name = match safe_filename(filename) {
        Ok(n) => n,
        Err(reason) => return failure(reason),
    };
    let planned = ex.with_session(&cookie, |session| {
        match session.imports.get(&name) {
            Some(ImportState::Running) => {
                return Err(Box::new(text(
                    StatusCode::OK,
                    format!("progress\nimporting {name}\n"),
                )));
            }
            Some(ImportState::Done) => return Err(Box::new(success())),
            Some(ImportState::Failed(reason)) => {
                return Err(Box::new(failure(format!("{name}: {reason}"))));
            }
            None => {}
        }
        if !wanted(&name) {
            return Err(Box::new(success()));
        }
        if session.receiving.contains(&name) {
            return Err(Box::new(failure(format!("{name} is still being received"))));
        }
        let source = match session.files.get(&name) {
            Some(_) if is_zip(&name) => {
                return Err(Box::new(failure(format!(
                    "{name} is an archive; ask for a file inside it"
                ))));
            }
            Some(stored) => Source::File(stored.path.clone()),
            None => {
                let archives: Vec<(String, PathBuf)> = session
                    .files
                    .iter()
                    .filter(|(n, _)| is_zip(n))
                    .map(|(n, s)| (n.clone(), s.path.clone()))
                    .collect();
                if archives.is_empty() {
                    return Err(Box::new(failure(format!(
                        "{name} was not received; send it with mode=file"
                    ))));
                }
                Source::Archives(archives)
            }
        };
        session.imports.insert(name.clone(), ImportState::Running);
        let limits = UnzipLimits {
            entries: ex.config.zip_entry_limit,
            bytes: ex
                .config
                .unpack_limit
                .saturating_sub(session.unpacked)
                .min(ex.config.upload_limit.saturating_sub(session.bytes)),
        };
        Ok((source, session.dir.clone(), limits))
    });
    let (source, dir, limits) = match planned {
        Ok(Ok(p)) => p,
        Ok(Err(answer)) => return *answer,
        Err(reason) => return failure(reason),
    };
    let ex = ex.clone();
    let task_name = name.clone();
    tokio::spawn(async move {
        let outcome = import_file(&ex, &cookie, &task_name, source, dir, limits).await;
        let state = match outcome {
            Ok(()) => ImportState::Done,
            Err(reason) => {
                tracing::warn!(file = %task_name, %reason, "1C file refused");
                ImportState::Failed(reason)
            }
        };
        if let Some(session) = ex.sessions().get_mut(&cookie) {
            session.imports.insert(task_name, state);
        }
    });
    text(StatusCode::OK, format!("progress\nimporting {name}\n"))
}

async fn import_file(
    ex: &Exchange,
    cookie: &str,
    name: &str,
    source: Source,
    dir: Arc<tempfile::TempDir>,
    limits: UnzipLimits,
) -> Result<(), String> {
    let path = match source {
        Source::File(path) => path,
        Source::Archives(archives) => {
            let wanted_name = name.to_string();
            let unpack_dir = dir.clone();
            let found = tokio::task::spawn_blocking(move || -> Result<Option<Unpacked>, String> {
                let mut n = 0u64;
                for (archive_name, archive) in archives {
                    let mut next = || {
                        n += 1;
                        unpack_dir
                            .path()
                            .join(format!("unpacked-{}-{n}", uuid::Uuid::new_v4().simple()))
                    };
                    let got = unzip(
                        &archive,
                        |entry| {
                            entry == wanted_name || entry.rsplit('/').next() == Some(&wanted_name)
                        },
                        true,
                        limits,
                        &mut next,
                    )
                    .map_err(|e| format!("{archive_name}: {e}"))?;
                    if let Some(u) = got.into_iter().next() {
                        return Ok(Some(u));
                    }
                }
                Ok(None)
            })
            .await
            .map_err(|e| format!("the import stopped: {e}"))??;
            let Some(unpacked) = found else {
                return Err(format!("{name} was not received; send it with mode=file"));
            };
            tracing::debug!(entry = %unpacked.entry, bytes = unpacked.stored.len, "1C file unpacked");
            let _ = ex.with_session(cookie, |session| {
                session.unpacked += unpacked.stored.len;
                session.bytes += unpacked.stored.len;
            });
            unpacked.stored.path
        }
    };
    let parsed = tokio::task::spawn_blocking(move || {
        // The directory lives while its file is read, even if the session ends meanwhile.
        let _dir = dir;
        commerceml::parse_file(&path)
    })
    .await
    .map_err(|e| format!("the import stopped: {e}"))?;
    let pkg = parsed.map_err(|e| e.to_string())?;
    apply(ex, &pkg).await
}

async fn apply(ex: &Exchange, pkg: &Package) -> Result<(), String> {
    match commerceml::apply(&ex.store, &ex.business_id, pkg, ex.clock.now()).await {
        Ok(()) => {
            tracing::info!(
                items = pkg.catalog.len(),
                offers = pkg.offers.len(),
                documents = pkg.documents.len(),
                "1C file imported"
            );
            if !pkg.offers.is_empty() {
                low_stock_alert(ex, pkg).await;
            }
            Ok(())
        }
        Err(CmlError::Malformed(m)) => Err(m),
        Err(CmlError::Store(e)) => {
            tracing::error!(error = %e, "1C exchange: cannot store the file");
            Err("the site's database is unavailable, try later".into())
        }
    }
}

async fn low_stock_alert(ex: &Exchange, pkg: &Package) {
    let Some(threshold) = ex.low_stock_threshold else {
        return;
    };
    let limit = i64::try_from(threshold)
        .unwrap_or(i64::MAX)
        .saturating_mul(1000);
    let low: Vec<String> = pkg
        .offers
        .iter()
        .filter_map(|o| {
            let q = o.quantity_milli?;
            (q <= limit).then(|| format!("{} ({})", o.name, q / 1000))
        })
        .collect();
    if low.is_empty() {
        return;
    }
    let now = ex.clock.now();
    ex.alerts
        .send(&Alert {
            kind: AlertKind::LowStock,
            business_id: ex.business_id.clone(),
            system: System::Onec,
            since: now,
            at: now,
            last_error: Some(low.join(", ")),
        })
        .await;
}

pub(super) async fn query(ex: &Exchange) -> Response {
    let now = ex.clock.now();
    let bookings = match commerceml::pending_for_query(&ex.store, &ex.business_id, now).await {
        Ok(b) => b,
        Err(e) => {
            tracing::error!(error = %e, "1C exchange: cannot read bookings");
            return failure("the site's database is unavailable, try later");
        }
    };
    let encoding = encoding_rs::Encoding::for_label(ex.config.encoding.as_bytes())
        .unwrap_or(encoding_rs::UTF_8);
    let style = DocumentStyle {
        encoding,
        timezone: ex.timezone,
    };
    match commerceml::write_documents(&bookings, now, &style) {
        Ok(bytes) => {
            let mut r = (StatusCode::OK, bytes).into_response();
            let content_type = format!("application/xml; charset={}", encoding.name());
            if let Ok(v) = HeaderValue::from_str(&content_type) {
                r.headers_mut().insert(header::CONTENT_TYPE, v);
            }
            r
        }
        Err(e) => failure(format!("cannot write the documents: {e}")),
    }
}

/// 1C's documents back (payments, statuses). A piece shorter than `file_limit` is the last
/// one; the whole file is then read from disk and applied at once.
pub(super) async fn sale_file(
    ex: &Exchange,
    cookie: &str,
    filename: Option<&str>,
    headers: &HeaderMap,
    body: Body,
) -> Response {
    let name = match safe_filename(filename) {
        Ok(n) => n,
        Err(reason) => return failure(reason),
    };
    let piece = match receive(ex, cookie, Some(&name), headers, body).await {
        Ok(n) => n,
        Err(reason) => return failure(reason),
    };
    if piece >= ex.config.file_limit || !wanted(&name) {
        return success();
    }
    let taken = ex.with_session(cookie, |session| {
        let stored = session.files.remove(&name)?;
        session.bytes = session.bytes.saturating_sub(stored.len);
        let limits = UnzipLimits {
            entries: ex.config.zip_entry_limit,
            bytes: ex
                .config
                .unpack_limit
                .saturating_sub(session.unpacked)
                .min(ex.config.upload_limit.saturating_sub(session.bytes)),
        };
        Some((stored, session.dir.clone(), limits))
    });
    let (stored, dir, limits) = match taken {
        Ok(Some(t)) => t,
        Ok(None) => return failure(format!("{name} was not received")),
        Err(reason) => return failure(reason),
    };
    let zipped = is_zip(&name);
    let parsed = tokio::task::spawn_blocking(move || -> Result<Package, String> {
        let files = if zipped {
            let mut n = 0u64;
            let mut next = || {
                n += 1;
                dir.path()
                    .join(format!("unpacked-{}-{n}", uuid::Uuid::new_v4().simple()))
            };
            let unpacked = unzip(
                &stored.path,
                |entry| entry.to_ascii_lowercase().ends_with(".xml"),
                false,
                limits,
                &mut next,
            );
            let _ = std::fs::remove_file(&stored.path);
            unpacked?.into_iter().map(|u| u.stored.path).collect()
        } else {
            vec![stored.path]
        };
        let mut all = Package::default();
        let mut outcome = Ok(());
        for file in &files {
            if outcome.is_ok() {
                match commerceml::parse_file(file) {
                    Ok(pkg) => {
                        all.catalog.extend(pkg.catalog);
                        all.offers.extend(pkg.offers);
                        all.documents.extend(pkg.documents);
                    }
                    Err(e) => outcome = Err(e.to_string()),
                }
            }
            let _ = std::fs::remove_file(file);
        }
        outcome.map(|()| all)
    })
    .await;
    let all = match parsed {
        Ok(Ok(all)) => all,
        Ok(Err(reason)) => return failure(format!("{name}: {reason}")),
        Err(e) => return failure(format!("{name}: the import stopped: {e}")),
    };
    match apply(ex, &all).await {
        Ok(()) => success(),
        Err(reason) => failure(format!("{name}: {reason}")),
    }
}
