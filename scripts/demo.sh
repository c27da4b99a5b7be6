#!/usr/bin/env bash
echo "make demo: coming with fleetsim and the orchestrator (see README)."
