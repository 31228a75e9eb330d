# admiral's CTCAE v6.0 grades of the pharmaverseadam ADLB, in SI and US-conventional units, for
# dosewatch's conformance test (tests/test_admiral_conformance.py). Usage, from the repository root:
#
#   Rscript tools/r/make_admiral_v6_fixture.R LIBRARY ADLB_RDA
#
# LIBRARY  a private library (e.g. /tmp/rlib) holding admiral and admiraldev built from their sources;
# ADLB_RDA pharmaverseadam's data/adlb.rda (the package is not installed: only the data file is read).
# Writes tests/fixtures/admiral-ctcae-6.0/adlb_graded.csv.gz and its README.md (versions, counts).
#
# What it took on the project machine (Debian bookworm, R 4.2.2), none of it kept in this repository:
#   apt-get install -y r-base-core r-cran-jsonlite     # r-cran-{tidyr,stringr,lubridate,purrr,hms,
#                                                      # lifecycle,magrittr,tidyselect,glue,withr,
#                                                      # roxygen2,generics,r6,utf8,pkgconfig} were present
#   admiral 1.4.1 needs cli >= 3.6.2 and dplyr >= 1.1.1, newer than bookworm's (3.6.0, 1.0.10), and
#   dplyr 1.1.4 needs newer rlang, vctrs, pillar and tibble: all six were built from their CRAN sources
#   (the read-only mirrors github.com/cran/<pkg> at the version tag) into the private library:
#   cli 3.6.5, rlang 1.1.6, vctrs 0.6.5, pillar 1.9.0, tibble 3.2.1, dplyr 1.1.4, then
#   admiraldev v1.4.0 and admiral v1.4.1 from github.com/pharmaverse/{admiraldev,admiral}
#   (R CMD INSTALL --no-docs -l LIBRARY <source dir>, in that order).
#   admiral v1.4.1 rather than main: main (1.5.0.9003) asks for admiraldev >= 1.5.0, which no source
#   snapshot had; v1.4.1's R/derive_var_atoxgr.R, data-raw/adlb_grading/ncictcaev6*.json and
#   data/atoxgr_criteria_ctcv6*.rda are byte-identical to main's at 6eb5125 (git diff is empty).
#   pharmaverseadam: data/adlb.rda at 2c7db61 (blob 332efbf, the ADLB of shared/conformance/admiral-adlb).
Sys.setenv(TZ = "UTC")
args <- commandArgs(trailingOnly = TRUE)
stopifnot(length(args) == 2)
.libPaths(c(args[1], .libPaths()))
suppressPackageStartupMessages({
  library(admiral)
  library(dplyr)
})
load(args[2]) # -> adlb

out_dir <- "tests/fixtures/admiral-ctcae-6.0"
dir.create(out_dir, showWarnings = FALSE, recursive = TRUE)

# CTCAE v6.0 terms for the ADLB parameters (admiral's template lookup, v4 terms changed to v6:
# Platelet count decreased -> Thrombocytopenia; CPK increased and Hypophosphatemia have no v6 lab
# criteria; LYMPH high graded as Lymphocyte count increased; urate graded as Hyperuricemia).
v6_terms <- tibble::tribble(
  ~PARAMCD, ~ATOXDSCL, ~ATOXDSCH,
  "ALB", "Hypoalbuminemia", NA_character_,
  "ALKPH", NA_character_, "Alkaline phosphatase increased",
  "ALT", NA_character_, "Alanine aminotransferase increased",
  "AST", NA_character_, "Aspartate aminotransferase increased",
  "BILI", NA_character_, "Blood bilirubin increased",
  "CA", "Hypocalcemia", "Hypercalcemia",
  "CHOLES", NA_character_, "Cholesterol high",
  "CREAT", NA_character_, "Creatinine increased",
  "GGT", NA_character_, "GGT increased",
  "GLUC", "Hypoglycemia", "Hyperglycemia",
  "HGB", "Anemia", "Hemoglobin increased",
  "LYMPH", "CD4 lymphocytes decreased", "Lymphocyte count increased",
  "PLAT", "Thrombocytopenia", NA_character_,
  "POTAS", "Hypokalemia", "Hyperkalemia",
  "SODIUM", "Hyponatremia", "Hypernatremia",
  "URATE", NA_character_, "Hyperuricemia",
  "WBC", "White blood cell decreased", "Leukocytosis"
)

# The rows admiral grades: not the MINIMUM / MAXIMUM / LOV copies the template adds after grading.
base <- adlb %>%
  filter(is.na(DTYPE) | DTYPE == "CALCULATION", PARAMCD %in% v6_terms$PARAMCD) %>%
  select(USUBJID, PARAMCD, PARAM, AVAL, ANRLO, ANRHI, BASE, BNRIND, ADY, AVISITN, LBSEQ) %>%
  arrange(USUBJID, PARAMCD, ADY, AVISITN, LBSEQ) %>%
  mutate(AVALU = extract_unit(PARAM)) %>%
  left_join(v6_terms, by = "PARAMCD")

# US-conventional copy: value, range and baseline converted with the same factor (4 significant
# digits, as reported), the unit in PARAM changed. Potassium and sodium stay in mmol/L (admiral's
# US table checks MMOL/L); enzymes stay in U/L; counts become 10^3/uL (the same number).
to_us <- tibble::tribble(
  ~PARAMCD, ~factor, ~unit_us,
  "ALB", 0.1, "g/dL",             # g/L -> g/dL
  "BILI", 1 / 17.1, "mg/dL",      # umol/L -> mg/dL (bilirubin 584.66 g/mol)
  "CA", 4.008, "mg/dL",           # mmol/L -> mg/dL (40.078 g/mol)
  "CHOLES", 38.67, "mg/dL",       # mmol/L -> mg/dL (386.65 g/mol)
  "CREAT", 1 / 88.42, "mg/dL",    # umol/L -> mg/dL (113.12 g/mol)
  "GLUC", 18.016, "mg/dL",        # mmol/L -> mg/dL (180.16 g/mol)
  "HGB", 1.61145, "g/dL",         # mmol/L (Hb monomer, 16114.5 g/mol) -> g/dL
  "LYMPH", 1, "10^3/uL",
  "PLAT", 1, "10^3/uL",
  "URATE", 1 / 59.48, "mg/dL",    # umol/L -> mg/dL (168.11 g/mol)
  "WBC", 1, "10^3/uL"
)
us <- base %>%
  left_join(to_us, by = "PARAMCD") %>%
  mutate(
    across(c(AVAL, ANRLO, ANRHI, BASE), ~ if_else(is.na(factor), .x, signif(.x * factor, 4))),
    AVALU = if_else(is.na(unit_us), AVALU, unit_us),
    PARAM = paste0(sub("\\s*\\([^()]*\\)\\s*$", "", PARAM), " (", AVALU, ")")
  ) %>%
  select(-factor, -unit_us)

grade <- function(data, criteria) {
  data %>%
    derive_var_atoxgr_dir(
      new_var = ATOXGRL, tox_description_var = ATOXDSCL, meta_criteria = criteria,
      criteria_direction = "L", low_indicator = "LOW", high_indicator = "HIGH",
      get_unit_expr = extract_unit(PARAM)
    ) %>%
    derive_var_atoxgr_dir(
      new_var = ATOXGRH, tox_description_var = ATOXDSCH, meta_criteria = criteria,
      criteria_direction = "H", low_indicator = "LOW", high_indicator = "HIGH",
      get_unit_expr = extract_unit(PARAM)
    )
}
graded <- bind_rows(
  grade(base %>% mutate(UNITS = "SI"), atoxgr_criteria_ctcv6),
  grade(us %>% mutate(UNITS = "US"), atoxgr_criteria_ctcv6_uscv)
) %>%
  arrange(match(UNITS, c("SI", "US")), USUBJID, PARAMCD, ADY, AVISITN, LBSEQ) %>%
  mutate(ROWID = row_number()) %>%
  select(ROWID, UNITS, USUBJID, PARAMCD, AVAL, AVALU, ANRLO, ANRHI, BASE, BNRIND, ADY,
         ATOXDSCL, ATOXDSCH, ATOXGRL, ATOXGRH)

# Numbers as the shortest text that reads back to the same double, so nothing is lost.
num <- function(x) {
  s <- formatC(x, digits = 15, format = "g")
  back <- suppressWarnings(as.numeric(s))
  long <- !is.na(x) & back != x
  s[long] <- formatC(x[long], digits = 17, format = "g")
  s <- trimws(s)
  s[is.na(x)] <- ""
  s
}
text <- graded %>% mutate(across(c(AVAL, ANRLO, ANRHI, BASE, ADY), num),
                          across(everything(), ~ if_else(is.na(.x), "", as.character(.x))))
con <- gzfile(file.path(out_dir, "adlb_graded.csv.gz"), "w")
write.csv(text, con, row.names = FALSE, quote = TRUE, na = "")
close(con)

counts <- graded %>%
  group_by(UNITS) %>%
  summarise(rows = n(), low_graded = sum(!is.na(ATOXGRL)), high_graded = sum(!is.na(ATOXGRH)),
            low_1_4 = sum(ATOXGRL %in% c("1", "2", "3", "4")), high_1_4 = sum(ATOXGRH %in% c("1", "2", "3", "4")))
by_grade <- graded %>%
  count(UNITS, PARAMCD, ATOXGRL, ATOXGRH) %>%
  mutate(across(everything(), ~ if_else(is.na(.x), "-", as.character(.x))))
md <- c(
  "# admiral's CTCAE v6.0 grades of the pharmaverseadam ADLB",
  "",
  "Written by `tools/r/make_admiral_v6_fixture.R` (see its header for how the packages were built);",
  "read by `tests/test_admiral_conformance.py`. Do not edit by hand.",
  "",
  paste0("- R: ", R.version.string),
  paste0("- admiral ", packageVersion("admiral"), ", admiraldev ", packageVersion("admiraldev"),
         ", dplyr ", packageVersion("dplyr"), ", rlang ", packageVersion("rlang"), ", cli ", packageVersion("cli")),
  "- criteria: `atoxgr_criteria_ctcv6` (SI rows) and `atoxgr_criteria_ctcv6_uscv` (US rows);",
  "  `low_indicator = \"LOW\"`, `high_indicator = \"HIGH\"` (BNRIND); unit from PARAM (`extract_unit`);",
  "  `signif_dig` 15 (default).",
  "- input: pharmaverseadam `data/adlb.rda` (2c7db61, blob 332efbf), rows with DTYPE empty or",
  "  CALCULATION of the parameters given a v6 term; the US rows are the same rows with value, range",
  "  and baseline converted (4 significant digits) as the script says.",
  "",
  "| units | rows | low graded | high graded | low grade 1-4 | high grade 1-4 |",
  "|---|---|---|---|---|---|",
  sprintf("| %s | %d | %d | %d | %d | %d |", counts$UNITS, counts$rows, counts$low_graded,
          counts$high_graded, counts$low_1_4, counts$high_1_4),
  "",
  "Rows per (units, PARAMCD, ATOXGRL, ATOXGRH), `-` = empty:",
  "",
  "| units | PARAMCD | ATOXGRL | ATOXGRH | rows |",
  "|---|---|---|---|---|",
  sprintf("| %s | %s | %s | %s | %s |", by_grade$UNITS, by_grade$PARAMCD, by_grade$ATOXGRL,
          by_grade$ATOXGRH, by_grade$n)
)
writeLines(md, file.path(out_dir, "README.md"))
cat("wrote", nrow(graded), "rows to", out_dir, "\n")
