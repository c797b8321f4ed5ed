#!/usr/bin/env bash
# Debian tools the tests use to check SpineAssist's DICOM output with software no one here wrote:
# dciodvfy (dicom3tools) and dcmdump (dcmtk), and a real PACS for the DICOMweb tests: Orthanc with its
# DICOMweb plugin (started by the tests on 127.0.0.1 only). Installed when missing and we may; otherwise a note.
set -u
need=()
command -v dciodvfy >/dev/null 2>&1 || need+=(dicom3tools)
command -v dcmdump >/dev/null 2>&1 || need+=(dcmtk)
command -v Orthanc >/dev/null 2>&1 || need+=(orthanc)
[ -e /usr/share/orthanc/plugins/libOrthancDicomWeb.so ] || need+=(orthanc-dicomweb)
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "Installing ${need[*]} (DICOM validators, PACS for tests) with apt-get ..."
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}") >/dev/null \
    || { echo "apt-get could not install ${need[*]}; DICOM validation and PACS tests will fail until it is installed" >&2; exit 1; }
else
  echo "note: ${need[*]} missing; install them (apt-get install ${need[*]}) for the DICOM validation and PACS tests" >&2
  exit 1
fi
