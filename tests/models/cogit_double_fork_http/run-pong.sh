#!/usr/bin/env bash
python3 ./pong.py &
wait
