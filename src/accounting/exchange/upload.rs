//! Receiving a file's pieces into the session's directory on disk, each under `file_limit`
//! and all under what the session may still hold.

use super::*;

/// Where a piece goes and how much may still arrive.
pub(super) struct Target {
    path: PathBuf,
    len_before: u64,
    room: u64,
}

/// Streams one piece of a file to its end on disk; 1C sends pieces in order. A piece over
/// `file_limit` or over what the session may still hold is refused and leaves nothing behind.
/// Returns the piece's size.
pub(super) async fn receive(
    ex: &Exchange,
    cookie: &str,
    filename: Option<&str>,
    headers: &HeaderMap,
    body: Body,
) -> Result<u64, String> {
    let name = safe_filename(filename).map_err(str::to_string)?;
    let limit = ex.config.file_limit;
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(format!(
            "a piece of {name} is larger than file_limit ({limit} bytes); send pieces no larger"
        ));
    }
    if !wanted(&name) {
        // Pictures of goods: read and dropped, so 1C's connection stays usable.
        return drain(body, limit).await;
    }
    let target = ex.with_session(cookie, |session| -> Result<Target, String> {
        match session.imports.get(&name) {
            Some(ImportState::Running) => return Err(format!("{name} is still being imported")),
            // A file sent again after its import is a new file, not more of the old one.
            Some(_) => {
                session.imports.remove(&name);
                session.forget(&name);
            }
            None => {}
        }
        if !session.receiving.insert(name.clone()) {
            return Err(format!("a piece of {name} is already being received"));
        }
        let stored = match session.files.get(&name) {
            Some(s) => s.clone(),
            None => {
                let stored = Stored {
                    path: session.new_path("upload"),
                    len: 0,
                };
                session.files.insert(name.clone(), stored.clone());
                stored
            }
        };
        Ok(Target {
            path: stored.path,
            len_before: stored.len,
            room: ex.config.upload_limit.saturating_sub(session.bytes),
        })
    })??;
    let written = write_piece(&target, body, limit).await;
    ex.with_session(cookie, |session| {
        session.receiving.remove(&name);
        match &written {
            Ok(n) => {
                session.bytes += n;
                if let Some(stored) = session.files.get_mut(&name) {
                    stored.len = target.len_before + n;
                }
            }
            Err(_) if target.len_before == 0 => session.forget(&name),
            Err(_) => {}
        }
    })?;
    written.map_err(|e| match e {
        PieceError::TooLarge => format!(
            "a piece of {name} is larger than file_limit ({limit} bytes); send pieces no larger"
        ),
        PieceError::SessionFull => format!(
            "the exchange is larger than {} (onec.commerceml.upload_limit); send fewer or \
             smaller files",
            megabytes(ex.config.upload_limit)
        ),
        PieceError::Body(e) => format!("the piece of {name} broke off: {e}"),
        PieceError::Disk(e) => {
            tracing::error!(error = %e, "1C exchange: cannot write a received file");
            "the site cannot store files now, try later".into()
        }
    })
}

enum PieceError {
    TooLarge,
    SessionFull,
    Body(axum::Error),
    Disk(std::io::Error),
}

async fn write_piece(target: &Target, body: Body, limit: u64) -> Result<u64, PieceError> {
    let mut file = tokio::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&target.path)
        .await
        .map_err(PieceError::Disk)?;
    let mut stream = body.into_data_stream();
    let mut piece = 0u64;
    let outcome = loop {
        let Some(chunk) = stream.next().await else {
            break Ok(piece);
        };
        let chunk = match chunk {
            Ok(c) => c,
            Err(e) => break Err(PieceError::Body(e)),
        };
        piece += chunk.len() as u64;
        if piece > limit {
            break Err(PieceError::TooLarge);
        }
        if piece > target.room {
            break Err(PieceError::SessionFull);
        }
        if let Err(e) = file.write_all(&chunk).await {
            break Err(PieceError::Disk(e));
        }
    };
    let flushed = file.flush().await;
    match (outcome, flushed) {
        (Ok(n), Ok(())) => Ok(n),
        (outcome, flushed) => {
            // Nothing of a refused piece stays: the file is as before it.
            let _ = file.set_len(target.len_before).await;
            Err(outcome.err().unwrap_or_else(|| {
                PieceError::Disk(
                    flushed
                        .err()
                        .unwrap_or_else(|| std::io::Error::other("write failed")),
                )
            }))
        }
    }
}

async fn drain(body: Body, limit: u64) -> Result<u64, String> {
    let mut stream = body.into_data_stream();
    let mut total = 0u64;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| format!("the piece broke off: {e}"))?;
        total += chunk.len() as u64;
        if total > limit {
            return Err(format!(
                "a piece is larger than file_limit ({limit} bytes); send pieces no larger"
            ));
        }
    }
    Ok(total)
}
