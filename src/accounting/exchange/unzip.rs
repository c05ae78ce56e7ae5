//! Unpacking the archives 1C sends, entry by entry to disk, under entry-count and size
//! limits that hold before the archive's directory is read.

use super::*;

/// The limits an archive is unpacked under.
#[derive(Debug, Clone, Copy)]
pub(crate) struct UnzipLimits {
    pub(crate) entries: u64,
    /// Bytes the picked entries may unpack to, together.
    pub(crate) bytes: u64,
}

#[derive(Debug)]
pub(crate) struct Unpacked {
    pub(crate) entry: String,
    pub(super) stored: Stored,
}

/// Reads through to a file but fails once `budget` bytes were read while it is set: the zip
/// reader loads the whole central directory when it opens an archive, so the directory's
/// size is bounded before the entry count can be checked.
struct Budgeted {
    file: std::fs::File,
    /// Bytes left while the archive is opened; `None` once it is.
    budget: std::rc::Rc<std::cell::Cell<Option<u64>>>,
    over: std::rc::Rc<std::cell::Cell<bool>>,
}

impl Read for Budgeted {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.file.read(buf)?;
        if let Some(left) = self.budget.get() {
            match left.checked_sub(n as u64) {
                Some(l) => self.budget.set(Some(l)),
                None => {
                    self.over.set(true);
                    return Err(std::io::Error::other(
                        "the archive's directory is too large",
                    ));
                }
            }
        }
        Ok(n)
    }
}

impl Seek for Budgeted {
    fn seek(&mut self, pos: SeekFrom) -> std::io::Result<u64> {
        self.file.seek(pos)
    }
}

/// Inflates the entries `pick` chooses into files under `dir` (to disk, never memory), under
/// the entry-count and size limits. With `first_only`, stops at the first one.
pub(crate) fn unzip(
    archive: &Path,
    pick: impl Fn(&str) -> bool,
    first_only: bool,
    limits: UnzipLimits,
    next_path: &mut dyn FnMut() -> PathBuf,
) -> Result<Vec<Unpacked>, String> {
    let file = std::fs::File::open(archive).map_err(|e| format!("cannot open the archive: {e}"))?;
    // The end record, one comment and up to the allowed number of directory entries with
    // ordinary names (46 bytes + name + extras each).
    let budget = 2 * (65_536 + 22) + limits.entries.saturating_mul(1024);
    let dir_budget = std::rc::Rc::new(std::cell::Cell::new(Some(budget)));
    let over = std::rc::Rc::new(std::cell::Cell::new(false));
    let reader = Budgeted {
        file,
        budget: dir_budget.clone(),
        over: over.clone(),
    };
    let too_many = || {
        format!(
            "the archive lists more than {} entries (onec.commerceml.zip_entry_limit)",
            limits.entries
        )
    };
    let opened = zip::ZipArchive::new(reader);
    dir_budget.set(None);
    let mut zip = match opened {
        Ok(z) => z,
        Err(_) if over.get() => return Err(too_many()),
        Err(e) => {
            return Err(format!(
                "not a readable zip archive ({e}); was it uploaded completely?"
            ));
        }
    };
    if zip.len() as u64 > limits.entries {
        return Err(too_many());
    }
    let mut left = limits.bytes;
    let too_big = || {
        format!(
            "the archive unpacks to more than {} (onec.commerceml.unpack_limit or what is left of \
             onec.commerceml.upload_limit)",
            megabytes(limits.bytes)
        )
    };
    let mut out = Vec::new();
    for i in 0..zip.len() {
        let Some(name) = zip.name_for_index(i).map(str::to_string) else {
            continue;
        };
        if !pick(&name) {
            continue;
        }
        let mut entry = zip
            .by_index(i)
            .map_err(|e| format!("broken archive entry {name}: {e}"))?;
        if entry.is_dir() {
            continue;
        }
        // The declared size may lie; it only refuses early. The copy below counts for real.
        if entry.size() > left {
            return Err(too_big());
        }
        let path = next_path();
        let mut target =
            std::fs::File::create(&path).map_err(|e| format!("cannot unpack {name}: {e}"))?;
        let copied = std::io::copy(&mut (&mut entry).take(left + 1), &mut target);
        let copied = match copied {
            Ok(n) if n <= left => n,
            Ok(_) => {
                let _ = std::fs::remove_file(&path);
                return Err(too_big());
            }
            Err(e) => {
                let _ = std::fs::remove_file(&path);
                return Err(format!("broken archive entry {name}: {e}"));
            }
        };
        left -= copied;
        out.push(Unpacked {
            entry: name,
            stored: Stored { path, len: copied },
        });
        if first_only {
            break;
        }
    }
    Ok(out)
}
