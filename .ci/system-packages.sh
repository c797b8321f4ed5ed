#!/usr/bin/env bash
# Debian tools the tests use to check SpineAssist's DICOM output with software no one here wrote:
# dciodvfy (dicom3tools) and dcmdump (dcmtk), and a real PACS for the DICOMweb tests: Orthanc with its
# DICOMweb plugin (started by the tests on 127.0.0.1 only), and for `spineassist view`: Mesa's EGL (the server
# renders Slicer's views offscreen) and Chromium with a font (the browser tests). Installed when missing and we
# may; otherwise a note.
set -u
need=()
command -v dciodvfy >/dev/null 2>&1 || need+=(dicom3tools)
command -v dcmdump >/dev/null 2>&1 || need+=(dcmtk)
command -v Orthanc >/dev/null 2>&1 || need+=(orthanc)
[ -e /usr/share/orthanc/plugins/libOrthancDicomWeb.so ] || need+=(orthanc-dicomweb)
ldconfig -p 2>/dev/null | grep -q libEGL_mesa || need+=(libegl1 libegl-mesa0 libgl1-mesa-dri)
command -v chromium >/dev/null 2>&1 || need+=(chromium)
[ -e /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ] || need+=(fonts-dejavu-core)
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "Installing ${need[*]} (DICOM validators, PACS, offscreen rendering, browser) with apt-get ..."
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}") >/dev/null \
    || { echo "apt-get could not install ${need[*]}; DICOM validation, PACS and browser tests will fail until it is installed" >&2; exit 1; }
else
  echo "note: ${need[*]} missing; install them (apt-get install ${need[*]}) for the DICOM validation, PACS and browser tests" >&2
  exit 1
fi
