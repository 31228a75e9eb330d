# Simulated operating characteristics from the R packages, for dosewatch's statistical comparison
# (tests/test_simulate.py). Usage, from the repository root:
#   Rscript tools/r/make_sim_fixtures.R /tmp/rlib
# Writes tests/fixtures/dosefinding/sim/{boin,crm,tite_boin}.json with each call's settings,
# the number of trials and the package's figures (selection %, stop %, mean patients / DLTs per dose,
# mean duration) and the elapsed time of the call on this machine.
args <- commandArgs(trailingOnly = TRUE)
lib <- if (length(args) >= 1) args[1] else "/tmp/rlib"
.libPaths(c(lib, .libPaths()))
suppressPackageStartupMessages({library(BOIN); library(dfcrm); library(TITEgBOIN); library(jsonlite)})
out <- "tests/fixtures/dosefinding/sim"
dir.create(out, showWarnings = FALSE, recursive = TRUE)
meta <- list(R = R.version.string, BOIN = as.character(packageVersion("BOIN")),
             dfcrm = as.character(packageVersion("dfcrm")), TITEgBOIN = as.character(packageVersion("TITEgBOIN")))

boin_case <- function(name, target, p, ncohort, cohortsize, ntrial, seed, extrasafe = FALSE, n.earlystop = 100,
                      startdose = 1) {
  t <- system.time(oc <- get.oc(target = target, p.true = p, ncohort = ncohort, cohortsize = cohortsize,
                                n.earlystop = n.earlystop, startdose = startdose, extrasafe = extrasafe,
                                ntrial = ntrial, seed = seed))[["elapsed"]]
  list(name = name, target = target, true_tox = p, ncohort = ncohort, cohortsize = cohortsize,
       extrasafe = extrasafe, n_earlystop = n.earlystop, start_dose = startdose, trials = ntrial, seed = seed,
       selection_pct = oc$selpercent, stop_pct = oc$percentstop, mean_patients = oc$npatients,
       mean_dlts = oc$ntox, mean_n = oc$totaln, elapsed_s = t)
}
boin <- list(
  boin_case("S1", 0.25, c(0.05, 0.10, 0.20, 0.30, 0.45), 10, 3, 20000, 6),
  boin_case("S2_extrasafe_earlystop", 0.30, c(0.10, 0.20, 0.30, 0.45, 0.60), 10, 3, 10000, 7,
            extrasafe = TRUE, n.earlystop = 12),
  boin_case("S3_toxic", 0.25, c(0.40, 0.50, 0.60, 0.70, 0.80), 10, 3, 10000, 8),
  boin_case("S4_start3_cohort2", 0.20, c(0.02, 0.05, 0.08, 0.15, 0.25, 0.40), 12, 2, 10000, 9, startdose = 3))
write_json(list(meta = meta, cases = boin), file.path(out, "boin.json"), auto_unbox = TRUE, digits = NA, pretty = TRUE)

crm_case <- function(name, p, skeleton, target, n, x0, mcohort, nsim, model = "empiric") {
  t <- system.time(s <- crmsim(PI = p, prior = skeleton, target = target, n = n, x0 = x0, nsim = nsim,
                               mcohort = mcohort, model = model, count = FALSE, seed = 1009))[["elapsed"]]
  list(name = name, true_tox = p, skeleton = skeleton, target = target, n = n, x0 = x0, cohortsize = mcohort,
       model = model, trials = nsim, selection_pct = 100 * s$MTD, stop_pct = 0, mean_patients = s$level,
       mean_dlts = s$tox, mean_n = n, elapsed_s = t)
}
sk_e <- getprior(0.05, 0.25, 3, 5)
sk_l <- getprior(0.05, 0.25, 3, 5, model = "logistic")
crm <- list(
  crm_case("S1_empiric_x0_3", c(0.05, 0.10, 0.20, 0.30, 0.45), sk_e, 0.25, 30, 3, 3, 3000),
  crm_case("S2_logistic_x0_1", c(0.02, 0.06, 0.12, 0.25, 0.40), sk_l, 0.25, 30, 1, 3, 1500, model = "logistic"))
write_json(list(meta = meta, cases = crm), file.path(out, "crm.json"), auto_unbox = TRUE, digits = NA, pretty = TRUE)

tite_case <- function(name, target, p, ncohort, cohortsize, maxt, accrual, ntrial, seed, maxpen = 0.5) {
  t <- system.time(oc <- get_oc_TITE_QuasiBOIN(target = target, prob = p, TITE = TRUE, ncohort = ncohort,
                                               cohortsize = cohortsize, maxt = maxt, accrual = accrual,
                                               maxpen = maxpen, ntrial = ntrial, seed = seed))[["elapsed"]]
  list(name = name, target = target, true_tox = p, ncohort = ncohort, cohortsize = cohortsize, window = maxt,
       accrual = accrual, max_pending = maxpen, late_fraction = 0.5, trials = ntrial, seed = seed,
       selection_pct = oc$selpercent, stop_pct = oc$percentstop, mean_patients = oc$npatients,
       mean_dlts = oc$ntox, mean_n = oc$totaln, mean_duration_days = oc$duration, elapsed_s = t)
}
tite <- list(
  tite_case("T1", 0.25, c(0.05, 0.12, 0.25, 0.40, 0.55), 10, 3, 28, 1 / 7, 4000, 100),
  tite_case("T2_fast_accrual", 0.30, c(0.10, 0.18, 0.30, 0.45, 0.60), 10, 3, 28, 1 / 2, 2000, 101))
write_json(list(meta = meta, cases = tite), file.path(out, "tite_boin.json"), auto_unbox = TRUE, digits = NA,
           pretty = TRUE)
