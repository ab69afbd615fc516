#!/usr/bin/env bash
python3 ./forker.py &
wait
