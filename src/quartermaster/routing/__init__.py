"""quartermaster.routing"""
