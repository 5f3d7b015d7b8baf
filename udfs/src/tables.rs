//! Registering Parquet / CSV / JSON files as tables, by extension.

use std::path::Path;

use datafusion::prelude::{CsvReadOptions, JsonReadOptions, ParquetReadOptions, SessionContext};

use crate::error::{Result, UdfError};

/// File formats a table can be read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TableFormat {
    /// `.parquet`
    Parquet,
    /// `.csv` with a header row.
    Csv,
    /// Newline-delimited JSON, `.json` / `.jsonl` / `.ndjson`.
    Json,
}

impl TableFormat {
    /// The format and file extension of `path`: its own extension, or for a
    /// directory the extension of the first data file inside.
    pub fn detect(path: &str) -> Result<(Self, String)> {
        let unknown = || UdfError::UnknownFormat {
            path: path.to_string(),
        };
        let p = Path::new(path);
        let extension = if p.is_dir() {
            first_data_extension(p)
        } else {
            p.extension().map(|e| e.to_string_lossy().to_lowercase())
        }
        .ok_or_else(unknown)?;
        let format = match extension.as_str() {
            "parquet" => Self::Parquet,
            "csv" => Self::Csv,
            "json" | "jsonl" | "ndjson" => Self::Json,
            _ => return Err(unknown()),
        };
        Ok((format, format!(".{extension}")))
    }
}

fn first_data_extension(dir: &Path) -> Option<String> {
    let mut names: Vec<_> = std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .collect();
    names.sort();
    names
        .iter()
        .filter_map(|p| p.extension().map(|e| e.to_string_lossy().to_lowercase()))
        .find(|e| matches!(e.as_str(), "parquet" | "csv" | "json" | "jsonl" | "ndjson"))
}

/// Registers `path` (a file, a directory of files, or a glob) as table `name`.
pub async fn register_table(ctx: &SessionContext, name: &str, path: &str) -> Result<TableFormat> {
    let (format, extension) = TableFormat::detect(path)?;
    let registered = register_format(ctx, name, path, format, &extension).await;
    registered.map_err(|source| UdfError::Table {
        name: name.to_string(),
        path: path.to_string(),
        source,
    })?;
    Ok(format)
}

async fn register_format(
    ctx: &SessionContext,
    name: &str,
    path: &str,
    format: TableFormat,
    extension: &str,
) -> datafusion::error::Result<()> {
    match format {
        TableFormat::Parquet => {
            let options = ParquetReadOptions::default().file_extension(extension);
            ctx.register_parquet(name, path, options).await?
        }
        TableFormat::Csv => {
            let options = CsvReadOptions::new()
                .has_header(true)
                .file_extension(extension);
            ctx.register_csv(name, path, options).await?
        }
        TableFormat::Json => {
            let options = JsonReadOptions::default().file_extension(extension);
            ctx.register_json(name, path, options).await?
        }
    }
    Ok(())
}

/// Splits a `NAME=PATH` table argument.
pub fn parse_table_spec(spec: &str) -> Result<(&str, &str)> {
    match spec.split_once('=') {
        Some((name, path)) if !name.is_empty() && !path.is_empty() => Ok((name, path)),
        _ => Err(UdfError::InvalidTableSpec(spec.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_follow_extensions() {
        assert_eq!(
            TableFormat::detect("x/pairs.parquet").unwrap().0,
            TableFormat::Parquet
        );
        assert_eq!(
            TableFormat::detect("pairs.CSV").unwrap(),
            (TableFormat::Csv, ".csv".into())
        );
        assert_eq!(
            TableFormat::detect("p.jsonl").unwrap(),
            (TableFormat::Json, ".jsonl".into())
        );
        assert!(
            TableFormat::detect("pairs.xlsx")
                .unwrap_err()
                .to_string()
                .contains("pairs.xlsx")
        );
    }

    #[test]
    fn directories_take_the_extension_of_their_files() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("part-0.parquet"), b"").unwrap();
        let path = dir.path().to_str().unwrap();
        assert_eq!(TableFormat::detect(path).unwrap().0, TableFormat::Parquet);
    }

    #[test]
    fn table_specs_need_a_name_and_a_path() {
        assert_eq!(
            parse_table_spec("t=a/b.parquet").unwrap(),
            ("t", "a/b.parquet")
        );
        assert!(parse_table_spec("t").is_err());
        assert!(parse_table_spec("=x.csv").is_err());
    }
}
